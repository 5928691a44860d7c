package rpcbackend

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/gworker/gworker/config"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
)

// DefaultExpires is the x-expires of the reply queue: Celery's
// result_expires default of one day (config.DefaultResultExpires).
const DefaultExpires = config.DefaultResultExpires

// Errors of the package; test with errors.Is.
var (
	// ErrNotSupported is returned by the operations the rpc:// backend
	// cannot do, like Celery's NotImplementedError: GroupResult
	// save/restore/delete.
	ErrNotSupported = errors.New("the rpc:// result backend does not support this operation")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("rpc backend closed")
	// ErrNoReplyQueue is returned by client operations on a backend built
	// with NewWorkerSide.
	ErrNoReplyQueue = errors.New("rpc backend has no reply queue (worker side only)")
)

// Publisher publishes one message; amqptransport's Broker satisfies it.
type Publisher interface {
	Publish(ctx context.Context, exchange, routingKey string, msg *protocol.RawMessage) error
}

// ReplyConsumer reads the client's reply queue.
type ReplyConsumer interface {
	// ConsumeReplies declares queue as Celery's rpc backend does
	// (durable=false, auto_delete=true, arguments {"x-expires": expires in
	// ms}) and consumes it without acknowledgements. Messages arrive on the
	// returned channel until ctx is cancelled; the channel is then closed.
	ConsumeReplies(ctx context.Context, queue string, expires time.Duration) (<-chan *protocol.RawMessage, error)
}

// Transport is what the client side needs: publishing (for Store) and the
// reply queue.
type Transport interface {
	Publisher
	ReplyConsumer
}

// Options configures a client-side Backend.
type Options struct {
	// ReplyTo is the client id: the reply queue's name and the reply_to
	// the client's producer writes on its task messages. Required.
	ReplyTo string
	// Expires is the reply queue's x-expires; DefaultExpires when 0.
	Expires time.Duration
	// Logger receives warnings about undecodable replies; zap.NewNop()
	// when nil.
	Logger *zap.Logger
}

// Backend is the rpc:// result backend. It implements result.Backend,
// result.NativeJoiner and result.GroupStore (whose methods return
// ErrNotSupported).
type Backend struct {
	pub     Publisher
	replyTo string
	log     *zap.Logger

	mu      sync.Mutex
	states  map[string]*result.Meta
	changed chan struct{} // closed and replaced on every update
	closed  bool
	client  bool

	cancel context.CancelFunc
	done   chan struct{}
}

var (
	_ result.Backend      = (*Backend)(nil)
	_ result.NativeJoiner = (*Backend)(nil)
	_ result.GroupStore   = (*Backend)(nil)
)

// NewWorkerSide returns a Backend that only stores (publishes) results, as
// a worker needs. Get reports PENDING and WaitReady fails with
// ErrNoReplyQueue.
func NewWorkerSide(pub Publisher) *Backend {
	return &Backend{pub: pub, log: zap.NewNop(), states: map[string]*result.Meta{}, changed: make(chan struct{})}
}

// New returns a client-side Backend: it declares and consumes the reply
// queue opts.ReplyTo until Close. Use the same id as the producer's
// ReplyTo so that workers answer to this queue.
func New(ctx context.Context, t Transport, opts Options) (*Backend, error) {
	if opts.ReplyTo == "" {
		return nil, errors.New("rpcbackend: Options.ReplyTo is required")
	}
	if opts.Expires <= 0 {
		opts.Expires = DefaultExpires
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	ch, err := t.ConsumeReplies(cctx, opts.ReplyTo, opts.Expires)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("rpcbackend: consume reply queue %q: %w", opts.ReplyTo, err)
	}
	b := &Backend{
		pub:     t,
		replyTo: opts.ReplyTo,
		log:     opts.Logger,
		states:  map[string]*result.Meta{},
		changed: make(chan struct{}),
		client:  true,
		cancel:  cancel,
		done:    make(chan struct{}),
	}
	go b.loop(ch)
	return b, nil
}

// ReplyTo returns the client id (reply queue name), "" on the worker side.
func (b *Backend) ReplyTo() string { return b.replyTo }

// Close stops consuming the reply queue and wakes every waiter with
// ErrClosed. It is safe to call more than once.
func (b *Backend) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	close(b.changed)
	b.mu.Unlock()
	if b.cancel != nil {
		b.cancel()
		<-b.done
	}
	return nil
}

func (b *Backend) loop(ch <-chan *protocol.RawMessage) {
	defer close(b.done)
	for raw := range ch {
		if raw == nil {
			continue
		}
		if err := b.handle(raw); err != nil {
			b.log.Warn("rpc backend: dropping undecodable reply",
				zap.String("correlation_id", raw.CorrelationID), zap.Error(err))
		}
	}
}

func (b *Backend) handle(raw *protocol.RawMessage) error {
	if raw.ContentType != "" && raw.ContentType != protocol.ContentTypeJSON {
		return fmt.Errorf("content type %q is not supported (json only)", raw.ContentType)
	}
	if ce, _ := raw.Headers["compression"].(string); ce != "" {
		return fmt.Errorf("compressed replies (%s) are not supported", ce)
	}
	m, err := result.DecodeMeta(raw.Body)
	if err != nil {
		return err
	}
	id := raw.CorrelationID
	if id == "" {
		id = m.TaskID
	}
	if id == "" {
		return errors.New("reply has neither correlation_id nor task_id")
	}
	if m.TaskID == "" {
		m.TaskID = id
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	if prev, ok := b.states[id]; ok && prev.Status.Ready() && !m.Status.Ready() {
		// A late non-final state never hides a final one.
		return nil
	}
	b.states[id] = m
	close(b.changed)
	b.changed = make(chan struct{})
	return nil
}

// Store publishes m to m.ReplyTo (nothing is sent when it is empty) with
// correlation_id m.CorrelationID, or m.TaskID when that is empty.
func (b *Backend) Store(ctx context.Context, m *result.Meta) error {
	if m == nil || m.TaskID == "" {
		return errors.New("rpcbackend: store: meta without task id")
	}
	if m.ReplyTo == "" {
		return nil
	}
	body, err := EncodeReply(m)
	if err != nil {
		return err
	}
	corr := m.CorrelationID
	if corr == "" {
		corr = m.TaskID
	}
	raw := &protocol.RawMessage{
		Headers:         map[string]any{},
		ContentType:     protocol.ContentTypeJSON,
		ContentEncoding: "utf-8",
		Body:            body,
		CorrelationID:   corr,
		DeliveryMode:    1,
		HasPriority:     true,
	}
	if err := b.pub.Publish(ctx, "", m.ReplyTo, raw); err != nil {
		return fmt.Errorf("rpcbackend: publish %s state of %s to %q: %w", m.Status, m.TaskID, m.ReplyTo, err)
	}
	return nil
}

// EncodeReply returns the body Celery's rpc backend publishes for m:
// {"task_id", "status", "result", "traceback", "children"}, as Python's
// json.dumps writes it.
func EncodeReply(m *result.Meta) ([]byte, error) {
	if m == nil || m.TaskID == "" {
		return nil, errors.New("rpcbackend: meta without task id")
	}
	if m.Status == "" {
		return nil, fmt.Errorf("rpcbackend: meta of %s has no status", m.TaskID)
	}
	var tb any
	if m.Traceback != "" {
		tb = m.Traceback
	}
	d := protocol.Dict{
		{Key: "task_id", Value: m.TaskID},
		{Key: "status", Value: string(m.Status)},
		{Key: "result", Value: resultValue(m.Result)},
		{Key: "traceback", Value: tb},
		{Key: "children", Value: childrenValue(m.Children)},
	}
	body, err := protocol.MarshalJSON(d)
	if err != nil {
		return nil, fmt.Errorf("rpcbackend: encode %s state of %s: %w", m.Status, m.TaskID, err)
	}
	return body, nil
}

func resultValue(v any) any {
	switch r := v.(type) {
	case *protocol.Exception:
		if r == nil {
			return nil
		}
		return r.Value()
	case *result.TaskError:
		if r == nil || r.Exception == nil {
			return nil
		}
		return r.Exception.Value()
	}
	return v
}

type tupler interface{ AsTuple() any }

func childrenValue(c []any) any {
	out := make([]any, len(c))
	for i, v := range c {
		if r, ok := v.(tupler); ok {
			out[i] = r.AsTuple()
		} else {
			out[i] = v
		}
	}
	return out
}

// Get returns the latest state received for taskID, or a PENDING meta.
func (b *Backend) Get(ctx context.Context, taskID string) (*result.Meta, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b.mu.Lock()
	m, ok := b.states[taskID]
	b.mu.Unlock()
	if !ok {
		return &result.Meta{TaskID: taskID, Status: result.Pending}, nil
	}
	cp := *m
	return &cp, nil
}

// Forget drops what the client knows of taskID.
func (b *Backend) Forget(ctx context.Context, taskID string) error {
	b.mu.Lock()
	delete(b.states, taskID)
	b.mu.Unlock()
	return nil
}

// WaitReady implements result.NativeJoiner: fn is called once per distinct
// id as soon as its final state has arrived on the reply queue.
func (b *Backend) WaitReady(ctx context.Context, ids []string, fn func(*result.Meta)) error {
	if !b.client {
		return ErrNoReplyQueue
	}
	pending := make(map[string]bool, len(ids))
	for _, id := range ids {
		pending[id] = true
	}
	for {
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			return ErrClosed
		}
		var ready []*result.Meta
		for id := range pending {
			if m, ok := b.states[id]; ok && m.Status.Ready() {
				cp := *m
				ready = append(ready, &cp)
				delete(pending, id)
			}
		}
		changed := b.changed
		b.mu.Unlock()
		for _, m := range ready {
			fn(m)
		}
		if len(pending) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

// SaveGroup returns ErrNotSupported, as Celery's rpc backend raises
// NotImplementedError.
func (b *Backend) SaveGroup(ctx context.Context, groupID string, tuple any) error {
	return fmt.Errorf("%w: GroupResult.save (group %s)", ErrNotSupported, groupID)
}

// RestoreGroup returns ErrNotSupported.
func (b *Backend) RestoreGroup(ctx context.Context, groupID string) (any, error) {
	return nil, fmt.Errorf("%w: GroupResult.restore (group %s)", ErrNotSupported, groupID)
}

// DeleteGroup returns ErrNotSupported.
func (b *Backend) DeleteGroup(ctx context.Context, groupID string) error {
	return fmt.Errorf("%w: GroupResult.delete (group %s)", ErrNotSupported, groupID)
}
