package amqptransport

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gworker/gworker/internal/testing/testenv"
)

func TestParseURLs(t *testing.T) {
	eps, err := parseURLs(" amqp://u:secret@h1:5672//; pyamqp://u:secret@h2:5673/v ;")
	if err != nil {
		t.Fatal(err)
	}
	if len(eps) != 2 || eps[0].uri.Host != "h1" || eps[0].uri.Vhost != "/" || eps[1].uri.Port != 5673 || eps[1].uri.Vhost != "v" {
		t.Fatalf("parsed %+v", eps)
	}
	for _, bad := range []string{";", " ; ", "amqp://u:secret@h1//;amqp://u:secret@h2/%zz"} {
		_, err := parseURLs(bad)
		if !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("parseURLs(%q): %v, want ErrInvalidConfig", bad, err)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("parseURLs(%q) error shows the password: %v", bad, err)
		}
	}
}

// refusedURL returns an amqp URL of a loopback port nobody listens on.
func refusedURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "amqp://guest:guest@" + addr + "/"
}

// The first URL of a failover list that answers is used, and after the
// connection is lost the next one is tried first.
func TestFailoverURLs(t *testing.T) {
	requireBroker(t)
	f := newFixture(t, func(c *Config) { c.URL = refusedURL(t) + ";" + testenv.AMQPURL() })
	if got := f.b.main.endpoint().url; got != testenv.AMQPURL() {
		t.Fatalf("connected to %s, want the second URL", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q := f.queue()
	if err := f.b.Declare(ctx, q); err != nil {
		t.Fatal(err)
	}
	f.killConnections(false)
	// The next URL after the lost one wraps around to the refused one,
	// then to the broker again.
	eventually(t, 30*time.Second, "reconnected", func() bool {
		f.b.main.mu.Lock()
		defer f.b.main.mu.Unlock()
		return f.b.main.cur != nil && f.b.main.epoch >= 2
	})
	if err := f.b.Declare(ctx, q); err != nil {
		t.Fatal(err)
	}
}

func TestHeartbeatFromURL(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.URL = testenv.AMQPURL() + "?heartbeat=7" })
	s, err := f.b.main.get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if hb := s.conn.Config.Heartbeat; hb != 7*time.Second {
		t.Fatalf("negotiated heartbeat %v, want 7s from the URL", hb)
	}
}

// blackhole is a TCP proxy that can stop forwarding while keeping both
// sockets open: a half-open connection as a dead host or a cut network
// leaves it.
type blackhole struct {
	l     net.Listener
	to    string
	drop  atomic.Bool
	mu    sync.Mutex
	conns []net.Conn
}

func newBlackhole(t *testing.T, to string) *blackhole {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &blackhole{l: l, to: to}
	go p.serve()
	t.Cleanup(p.close)
	return p
}

func (p *blackhole) serve() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", p.to)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, u)
		p.mu.Unlock()
		go p.pipe(c, u)
		go p.pipe(u, c)
	}
}

func (p *blackhole) pipe(from, to net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := from.Read(buf)
		if n > 0 && !p.drop.Load() {
			if _, werr := to.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				to.Close()
			}
			return
		}
	}
}

func (p *blackhole) close() {
	p.l.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
}

// A connection that silently stops carrying data (half-open) is detected
// by the heartbeat and replaced.
func TestHalfOpenConnectionDetected(t *testing.T) {
	requireBroker(t)
	uri, _, err := parseURL(testenv.AMQPURL())
	if err != nil {
		t.Fatal(err)
	}
	bh := newBlackhole(t, net.JoinHostPort(uri.Host, strconv.Itoa(uri.Port)))
	const hb = 2 * time.Second
	f := newFixture(t, func(c *Config) {
		c.URL = "amqp://guest:guest@" + bh.l.Addr().String() + "/"
		c.Heartbeat = hb
	})
	s, err := f.b.main.get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	bh.drop.Store(true)
	select {
	case <-s.closed:
	case <-time.After(60 * time.Second):
		t.Fatal("a half-open connection was not detected within 60 s")
	}
	t.Logf("half-open connection detected after %v (heartbeat %v, bound 2.5 heartbeats = %v)",
		time.Since(start).Round(10*time.Millisecond), hb, hb*5/2)
	bh.drop.Store(false)
	eventually(t, 30*time.Second, "reconnected", func() bool {
		f.b.main.mu.Lock()
		defer f.b.main.mu.Unlock()
		return f.b.main.cur != nil && f.b.main.cur != s
	})
}
