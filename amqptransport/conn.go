package amqptransport

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap"
)

// session is one live AMQP connection and its generation number.
type session struct {
	conn  *amqp.Connection
	epoch uint64
	// at is the index of the endpoint (Config.URL) it is connected to.
	at int
	// closed is closed once the connection is gone; err then holds the
	// reason (nil for a close we asked for).
	closed chan struct{}
	err    *amqp.Error
	// unblocked is closed while the broker is not blocking publishers
	// (connection.blocked); replaced by an open channel while it is.
	mu        sync.Mutex
	unblocked chan struct{}
}

func (s *session) closeErr() *amqp.Error {
	<-s.closed
	return s.err
}

// isClosed reports whether the connection is gone, including the moment
// amqp091-go has marked it closed but not yet notified us.
func (s *session) isClosed() bool {
	select {
	case <-s.closed:
		return true
	default:
		return s.conn.IsClosed()
	}
}

func (s *session) waitUnblocked(ctx context.Context) error {
	s.mu.Lock()
	ch := s.unblocked
	s.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-s.closed:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("amqptransport: broker is blocking publishers (resource alarm): %w", context.Cause(ctx))
	}
}

// connManager owns one logical connection: it dials, watches for the close,
// and redials with backoff in the background until stopped.
type connManager struct {
	cfg  Config
	eps  []endpoint
	name string
	log  *zap.Logger

	mu sync.Mutex
	// at is the endpoint of the current (or last) connection, next the
	// one the next dial tries first.
	at, next int
	cur      *session      // nil while disconnected
	ready    chan struct{} // closed when cur != nil or the manager stopped
	epoch    uint64
	// lastErr is the close reason of the most recent connection.
	stopped bool

	stop chan struct{}
	wg   sync.WaitGroup
}

func newConnManager(cfg Config, eps []endpoint, name string, log *zap.Logger) *connManager {
	return &connManager{
		cfg: cfg, eps: eps, name: name, log: log,
		ready: make(chan struct{}),
		stop:  make(chan struct{}),
	}
}

// start dials the first connection synchronously (retrying until ctx
// expires) and then supervises it in the background.
func (m *connManager) start(ctx context.Context) error {
	s, err := m.dialRetry(ctx)
	if err != nil {
		return err
	}
	m.install(s)
	m.wg.Add(1)
	go m.supervise(s)
	return nil
}

// startLazy supervises without a first synchronous dial.
func (m *connManager) startLazy() {
	m.wg.Add(1)
	go m.supervise(nil)
}

func (m *connManager) install(s *session) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cur = s
	close(m.ready)
}

func (m *connManager) supervise(s *session) {
	defer m.wg.Done()
	for {
		if s != nil {
			select {
			case <-s.closed:
			case <-m.stop:
				return
			}
			m.mu.Lock()
			if m.cur == s {
				m.cur = nil
				m.ready = make(chan struct{})
			}
			// The node we were connected to is likely the one that
			// failed: start with the next one.
			m.next = (m.at + 1) % len(m.eps)
			m.mu.Unlock()
			if s.err != nil {
				m.log.Warn("connection lost; reconnecting",
					zap.Uint64("epoch", s.epoch), zap.Int("code", s.err.Code),
					zap.String("reason", s.err.Reason), zap.Bool("server", s.err.Server))
			}
		}
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-m.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		ns, err := m.dialRetry(ctx)
		cancel()
		if err != nil {
			return // stopped
		}
		m.install(ns)
		if s != nil {
			m.log.Info("reconnected", zap.Uint64("epoch", ns.epoch))
		}
		s = ns
	}
}

// endpoint returns the endpoint of the current (or last) connection.
func (m *connManager) endpoint() endpoint {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.eps[m.at]
}

// urls returns the configured URLs, redacted, for messages.
func (m *connManager) urls() string {
	s := make([]string, len(m.eps))
	for i, ep := range m.eps {
		s[i] = RedactURL(ep.raw)
	}
	return strings.Join(s, ";")
}

// dialAny tries every endpoint once, starting with m.next.
func (m *connManager) dialAny(ctx context.Context) (*session, error) {
	m.mu.Lock()
	start := m.next
	m.mu.Unlock()
	var errs []error
	for k := range m.eps {
		i := (start + k) % len(m.eps)
		s, err := m.dial(ctx, i)
		if err == nil {
			m.mu.Lock()
			m.at, m.next = i, i
			m.mu.Unlock()
			return s, nil
		}
		if len(m.eps) > 1 {
			err = fmt.Errorf("%s: %w", RedactURL(m.eps[i].raw), err)
			if ctx.Err() == nil {
				m.log.Warn("cannot connect to a broker of the failover list; trying the next",
					zap.String("url", RedactURL(m.eps[i].raw)), zap.Error(err))
			}
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// dialRetry dials until it succeeds or ctx ends.
func (m *connManager) dialRetry(ctx context.Context) (*session, error) {
	bo := backoff{min: m.cfg.ReconnectMin, max: m.cfg.ReconnectMax, rnd: rand.Float64}
	for attempt := 1; ; attempt++ {
		s, err := m.dialAny(ctx)
		if err == nil {
			return s, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("amqptransport: connect to %s: %w (last error: %v)", m.urls(), context.Cause(ctx), err)
		}
		var ae *amqp.Error
		if errors.As(err, &ae) && ae.Code == amqp.AccessRefused && attempt == 1 {
			m.log.Error("broker refused the credentials", zap.String("url", m.urls()), zap.Error(err))
		}
		d := bo.next()
		m.log.Warn("cannot connect to broker; retrying", zap.String("url", m.urls()),
			zap.Int("attempt", attempt), zap.Duration("retry_in", d), zap.Error(err))
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("amqptransport: connect to %s: %w (last error: %v)", m.urls(), context.Cause(ctx), err)
		}
	}
}

func (m *connManager) dial(ctx context.Context, at int) (*session, error) {
	ep := m.eps[at]
	conn, err := openAMQP(ctx, m.cfg, ep, m.name)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	m.epoch++
	epoch := m.epoch
	m.mu.Unlock()
	s := &session{conn: conn, epoch: epoch, at: at, closed: make(chan struct{}), unblocked: make(chan struct{})}
	close(s.unblocked)
	closes := conn.NotifyClose(make(chan *amqp.Error, 1))
	blocks := conn.NotifyBlocked(make(chan amqp.Blocking, 4))
	go func() {
		for {
			select {
			case e := <-closes:
				s.err = e
				close(s.closed)
				return
			case b, ok := <-blocks:
				if !ok {
					blocks = nil
					continue
				}
				s.mu.Lock()
				if b.Active {
					s.unblocked = make(chan struct{})
					m.log.Warn("broker blocks publishing", zap.String("reason", b.Reason))
				} else {
					select {
					case <-s.unblocked:
					default:
						close(s.unblocked)
					}
					m.log.Info("broker unblocked publishing")
				}
				s.mu.Unlock()
			}
		}
	}()
	m.log.Debug("connected", zap.String("url", RedactURL(ep.raw)), zap.Uint64("epoch", epoch),
		zap.Duration("heartbeat", conn.Config.Heartbeat))
	return s, nil
}

// openAMQP opens one AMQP connection to ep, named name on the broker, with
// cfg's heartbeat and dial timeout, aborting the handshake when ctx ends.
func openAMQP(ctx context.Context, cfg Config, ep endpoint, name string) (*amqp.Connection, error) {
	hb := cfg.Heartbeat
	if hb < 0 {
		hb = 0
	}
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(name)
	props["product"] = "gworker"
	timeout := cfg.DialTimeout
	var stopAfter func() bool
	var hc *heartbeatConn
	dialer := func(network, addr string) (net.Conn, error) {
		dctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		c, err := (&net.Dialer{KeepAlive: 30 * time.Second}).DialContext(dctx, network, addr)
		if err != nil {
			return nil, err
		}
		deadline := time.Now().Add(timeout)
		if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
			deadline = d
		}
		if err := c.SetDeadline(deadline); err != nil {
			c.Close()
			return nil, err
		}
		// Abort the handshake when ctx ends.
		stopAfter = context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
		hc = &heartbeatConn{Conn: c}
		return hc, nil
	}
	conn, err := amqp.DialConfig(ep.url, amqp.Config{
		Heartbeat:  hb,
		Properties: props,
		Dial:       dialer,
		Locale:     "en_US",
	})
	if stopAfter != nil {
		stopAfter()
	}
	if err != nil {
		return nil, err
	}
	if hc != nil {
		hc.heartbeat.Store(int64(conn.Config.Heartbeat))
	}
	return conn, nil
}

// heartbeatConn sets the read deadline amqp091-go renews after every frame
// it reads to 2.5 negotiated heartbeat intervals: a connection that sent
// nothing for that long (RabbitMQ sends a heartbeat every half interval
// when idle) is dead, and the reader fails it. amqp091-go's own deadline
// let a half-open connection live about 3 intervals.
type heartbeatConn struct {
	net.Conn
	heartbeat atomic.Int64 // negotiated interval; 0 until the handshake ends
}

func (c *heartbeatConn) SetReadDeadline(t time.Time) error {
	if hb := time.Duration(c.heartbeat.Load()); hb > 0 && !t.IsZero() {
		t = time.Now().Add(hb * 5 / 2)
	}
	return c.Conn.SetReadDeadline(t)
}

// get returns the current session, waiting for a reconnect when there is
// none.
func (m *connManager) get(ctx context.Context) (*session, error) {
	for {
		m.mu.Lock()
		if m.stopped {
			m.mu.Unlock()
			return nil, ErrClosed
		}
		s, ready := m.cur, m.ready
		m.mu.Unlock()
		if s != nil && !s.isClosed() {
			return s, nil
		}
		if s != nil {
			// Closed but not yet noticed by the supervisor.
			select {
			case <-time.After(time.Millisecond):
			case <-ctx.Done():
				return nil, context.Cause(ctx)
			}
			continue
		}
		select {
		case <-ready:
		case <-m.stop:
			return nil, ErrClosed
		case <-ctx.Done():
			return nil, fmt.Errorf("amqptransport: waiting for the broker connection: %w", context.Cause(ctx))
		}
	}
}

// shutdown stops the supervisor and closes the connection.
func (m *connManager) shutdown() error {
	m.mu.Lock()
	if m.stopped {
		m.mu.Unlock()
		return nil
	}
	m.stopped = true
	close(m.stop)
	s := m.cur
	m.mu.Unlock()
	m.wg.Wait()
	m.mu.Lock()
	s2 := m.cur
	m.mu.Unlock()
	if s2 != nil {
		s = s2
	}
	var err error
	if s != nil && !s.isClosed() {
		err = s.conn.Close()
		if errors.Is(err, amqp.ErrClosed) {
			err = nil
		}
		<-s.closed
	}
	return err
}
