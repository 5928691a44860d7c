package producer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/gworker/gworker/config"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/transport"
)

// DefaultQueue is Celery's default task queue (task_default_queue):
// config.DefaultQueue.
const DefaultQueue = config.DefaultQueue

// Errors returned by the producer. They are wrapped with details; test with
// errors.Is.
var (
	// ErrInvalidOption: an option value is out of range or unsupported
	// (negative countdown, unknown serializer, priority > 255, ...).
	ErrInvalidOption = errors.New("invalid task option")
	// ErrNoTaskName: the task name is empty.
	ErrNoTaskName = errors.New("task name is empty")
	// ErrPublish: the transport failed to publish (or declare) the message.
	ErrPublish = errors.New("cannot publish task message")
)

// Publisher publishes an encoded message. amqptransport's Broker satisfies
// it; it is expected to wait for the broker's publisher confirm. A message
// with an eta goes through PublishDelayed when the Publisher is also a
// transport.DelayPublisher (amqptransport's native delayed delivery).
type Publisher interface {
	Publish(ctx context.Context, exchange, routingKey string, msg *protocol.RawMessage) error
}

// Declarer is implemented by publishers that can declare a task queue the
// way kombu does before the first publish to it: a durable direct exchange
// and a durable queue, both named name, bound with routing key name.
// Declaring an existing queue with the same flags is a no-op on the broker.
type Declarer interface {
	DeclareTaskQueue(ctx context.Context, name string) error
}

// Options configures a Producer. The zero value is usable.
type Options struct {
	// Backend is where results are read; it is handed to the AsyncResults
	// the producer returns. It may be nil (results are then not readable
	// through the returned AsyncResult).
	Backend result.Backend
	// DefaultQueue is the queue tasks go to without a Queue option
	// ("celery" when empty).
	DefaultQueue string
	// Serializer is "json" (default) or "msgpack".
	Serializer string
	// Compression is "" (default) or "zlib".
	Compression string
	// Hostname is used in the origin header gen<pid>@<Hostname>; the
	// machine's host name when empty.
	Hostname string
	// Origin replaces the whole origin header when set.
	Origin string
	// ReplyTo is the client id written as reply_to on every message (the
	// RPC backend's reply queue). A random UUID when empty.
	ReplyTo string
	// Logger receives debug logs; zap.NewNop() when nil.
	Logger *zap.Logger
	// Now returns the current time; time.Now when nil. Tests use it to pin
	// eta/expires.
	Now func() time.Time
	// NewID generates task and group ids; NewID (UUID4) when nil.
	NewID func() string
	// Middleware wraps every publish (see Middleware), the first one
	// outermost.
	Middleware []Middleware
}

// Producer sends task messages. It is safe for concurrent use.
type Producer struct {
	pub    Publisher
	opts   Options
	origin string
	send   PublishFunc // publish wrapped in Options.Middleware

	mu       sync.Mutex
	declared map[string]bool
}

// New returns a Producer publishing through pub.
func New(pub Publisher, opts Options) *Producer {
	if opts.DefaultQueue == "" {
		opts.DefaultQueue = DefaultQueue
	}
	if opts.Serializer == "" {
		opts.Serializer = "json"
	}
	if opts.Hostname == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "localhost"
		}
		opts.Hostname = h
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.NewID == nil {
		opts.NewID = NewID
	}
	if opts.ReplyTo == "" {
		opts.ReplyTo = opts.NewID()
	}
	origin := opts.Origin
	if origin == "" {
		origin = "gen" + strconv.Itoa(os.Getpid()) + "@" + opts.Hostname
	}
	p := &Producer{pub: pub, opts: opts, origin: origin, declared: map[string]bool{}}
	p.send = chainPublish(opts.Middleware, p.publish)
	return p
}

// Backend returns the result backend given in Options (may be nil).
func (p *Producer) Backend() result.Backend { return p.opts.Backend }

// ReplyTo returns the producer's client id, the default reply_to.
func (p *Producer) ReplyTo() string { return p.opts.ReplyTo }

// Origin returns the origin header the producer writes.
func (p *Producer) Origin() string { return p.origin }

// NewID returns a new task or group id from the producer's generator.
func (p *Producer) NewID() string { return p.opts.NewID() }

// Now returns the producer's current time.
func (p *Producer) Now() time.Time { return p.opts.Now() }

// Route says where a message goes. Exchange "" with RoutingKey = queue name
// is Celery's default. Declare names a task queue to declare (once per
// producer, when the Publisher is a Declarer) before publishing; "" means
// none.
type Route struct {
	Exchange   string
	RoutingKey string
	Declare    string
}

// SendTask sends the task name with args and kwargs and returns its
// AsyncResult. It blocks until the transport has published the message
// (with publisher confirms when the transport uses them).
func (p *Producer) SendTask(ctx context.Context, name string, args []any, kwargs map[string]any, opts ...Option) (*result.AsyncResult, error) {
	msg, err := p.Build(name, args, kwargs, opts...)
	if err != nil {
		return nil, err
	}
	if err := p.PublishMessage(ctx, msg); err != nil {
		return nil, err
	}
	return p.AsyncResult(msg.ID), nil
}

// Message is a task message ready to publish: the decoded form, where it
// goes and how it is encoded.
type Message struct {
	*protocol.Message
	Route    Route
	Encoding protocol.EncodeOptions
	// Expiration is the AMQP expiration property (milliseconds), "" for
	// none.
	Expiration string
}

// Build turns a task call into the message SendTask would publish, without
// publishing it. The result is deterministic given Options.Now and
// Options.NewID (or TaskID).
func (p *Producer) Build(name string, args []any, kwargs map[string]any, opts ...Option) (Message, error) {
	var c call
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	if name == "" {
		return Message{}, ErrNoTaskName
	}
	if err := c.validate(); err != nil {
		return Message{}, err
	}
	now := p.opts.Now().UTC()

	id := c.taskID
	if id == "" {
		id = p.opts.NewID()
	}
	if args == nil {
		args = []any{}
	}
	if kwargs == nil {
		kwargs = map[string]any{}
	}
	m := &protocol.Message{
		Protocol:      2,
		ID:            id,
		Task:          name,
		Args:          args,
		Kwargs:        kwargs,
		Callbacks:     c.link,
		Errbacks:      c.linkError,
		Chain:         c.chain,
		Chord:         c.chord,
		Retries:       c.retries,
		TimeLimit:     c.timeLimit,
		SoftTimeLimit: c.softTimeLimit,
		RootID:        c.rootID,
		ParentID:      c.parentID,
		GroupID:       c.groupID,
		GroupIndex:    c.groupIndex,
		Shadow:        c.shadow,
		Origin:        p.origin,
		Lang:          "py",
		ArgsRepr:      protocol.ArgsRepr(args),
		KwargsRepr:    protocol.Repr(kwargs),
		IgnoreResult:  c.ignoreResult,
		ReplyTo:       p.opts.ReplyTo,
		CorrelationID: id,
	}
	if m.RootID == "" {
		m.RootID = id
	}
	if c.replyTo != "" {
		m.ReplyTo = c.replyTo
	}
	if len(c.headers) > 0 {
		h, err := sanitizeHeaders(c.headers)
		if err != nil {
			return Message{}, err
		}
		m.Headers = h
	}
	switch {
	case c.countdown != nil:
		if *c.countdown == 0 {
			// Celery converts only a non-zero countdown to an eta.
			break
		}
		t := now.Add(*c.countdown)
		m.ETA = &t
	case c.eta != nil:
		t := c.eta.UTC()
		m.ETA = &t
	}
	var expiration string
	switch {
	case c.expiresIn != nil:
		t := now.Add(*c.expiresIn)
		m.Expires = &t
		expiration = expirationMillis(*c.expiresIn)
	case c.expiresAt != nil:
		t := c.expiresAt.UTC()
		m.Expires = &t
		expiration = expirationMillis(t.Sub(now))
	}

	// Priority: Celery routes a call without an explicit queue to the
	// default queue, whose options carry priority 0; an explicit queue
	// (or exchange) leaves the property out unless one is given.
	switch {
	case c.priority != nil:
		m.Priority, m.HasPriority = uint8(*c.priority), true
	case c.queue == "" && c.exchange == "":
		m.Priority, m.HasPriority = 0, true
	}

	var route Route
	if c.exchange != "" && c.routingKey != "" {
		route = Route{Exchange: c.exchange, RoutingKey: c.routingKey, Declare: c.queue}
	} else {
		q := c.queue
		if q == "" {
			q = p.opts.DefaultQueue
		}
		route = Route{Exchange: "", RoutingKey: q, Declare: q}
	}
	m.Exchange, m.RoutingKey = route.Exchange, route.RoutingKey

	enc := protocol.EncodeOptions{Serializer: p.opts.Serializer, Compression: p.opts.Compression}
	if c.serializer != "" {
		enc.Serializer = c.serializer
	}
	if c.compression != "" {
		enc.Compression = c.compression
	}
	if err := checkEncoding(enc); err != nil {
		return Message{}, err
	}
	m.ContentType = contentType(enc.Serializer)
	return Message{Message: m, Route: route, Encoding: enc, Expiration: expiration}, nil
}

// Publish publishes an already built task message: the worker uses it to
// re-send a task for a retry (same id) and to send callbacks it built
// itself. The 16 standard headers come from m's fields; m.Headers may carry
// extra custom headers (standard keys and "compression" in it are ignored,
// so a delivered message's header table can be passed back unchanged).
// The serializer follows m.ContentType (msgpack or JSON), compression
// follows the "compression" header of m.Headers (else the producer's
// default), and the expiration property is computed from m.Expires.
func (p *Producer) Publish(ctx context.Context, m *protocol.Message, route Route) error {
	if m == nil || m.ID == "" || m.Task == "" {
		return fmt.Errorf("%w: message needs an id and a task name", ErrInvalidOption)
	}
	cp := *m
	cp.Headers = customHeaders(m.Headers)
	if cp.Origin == "" {
		cp.Origin = p.origin
	}
	if cp.Lang == "" {
		cp.Lang = "py"
	}
	if cp.RootID == "" {
		cp.RootID = cp.ID
	}
	if cp.ArgsRepr == "" {
		cp.ArgsRepr = protocol.ArgsRepr(cp.Args)
	}
	if cp.KwargsRepr == "" {
		cp.KwargsRepr = protocol.Repr(cp.Kwargs)
	}
	enc := protocol.EncodeOptions{Serializer: "json", Compression: p.opts.Compression}
	if m.ContentType == protocol.ContentTypeMsgpack {
		enc.Serializer = "msgpack"
	}
	if c, ok := m.Headers["compression"].(string); ok {
		enc.Compression = ""
		if c == "application/x-gzip" {
			enc.Compression = "zlib"
		}
	}
	var expiration string
	if cp.Expires != nil {
		expiration = expirationMillis(cp.Expires.Sub(p.opts.Now()))
	}
	return p.PublishMessage(ctx, Message{Message: &cp, Route: route, Encoding: enc, Expiration: expiration})
}

// PublishMessage publishes a message made by Build.
func (p *Producer) PublishMessage(ctx context.Context, msg Message) error {
	if msg.Message == nil {
		return fmt.Errorf("%w: empty message", ErrInvalidOption)
	}
	return p.send(ctx, msg)
}

// Encode encodes a built message into what the transport publishes.
func (p *Producer) Encode(msg Message) (*protocol.RawMessage, error) {
	raw, err := protocol.Encode(msg.Message, msg.Encoding)
	if err != nil {
		return nil, fmt.Errorf("producer: encode task %s: %w", msg.ID, err)
	}
	m := msg.Message
	raw.CorrelationID = m.CorrelationID
	if raw.CorrelationID == "" {
		raw.CorrelationID = m.ID
	}
	raw.ReplyTo = m.ReplyTo
	raw.DeliveryMode = 2
	raw.Priority, raw.HasPriority = m.Priority, m.HasPriority
	raw.Expiration = msg.Expiration
	return raw, nil
}

func (p *Producer) publish(ctx context.Context, msg Message) error {
	m, route := msg.Message, msg.Route
	raw, err := p.Encode(msg)
	if err != nil {
		return err
	}
	if err := p.declare(ctx, route.Declare); err != nil {
		return err
	}
	if dp, ok := p.pub.(transport.DelayPublisher); ok && m.ETA != nil {
		// The transport may have the broker hold it until its eta.
		err = dp.PublishDelayed(ctx, route.Exchange, route.RoutingKey, raw, *m.ETA)
	} else {
		err = p.pub.Publish(ctx, route.Exchange, route.RoutingKey, raw)
	}
	if err != nil {
		return fmt.Errorf("%w: task %s (%s) to %q/%q: %w", ErrPublish, m.ID, m.Task, route.Exchange, route.RoutingKey, err)
	}
	p.opts.Logger.Debug("task sent",
		zap.String("task", m.Task), zap.String("id", m.ID),
		zap.String("exchange", route.Exchange), zap.String("routing_key", route.RoutingKey))
	return nil
}

func (p *Producer) declare(ctx context.Context, queue string) error {
	d, ok := p.pub.(Declarer)
	if !ok || queue == "" {
		return nil
	}
	p.mu.Lock()
	done := p.declared[queue]
	p.mu.Unlock()
	if done {
		return nil
	}
	if err := d.DeclareTaskQueue(ctx, queue); err != nil {
		return fmt.Errorf("%w: declare queue %q: %w", ErrPublish, queue, err)
	}
	p.mu.Lock()
	p.declared[queue] = true
	p.mu.Unlock()
	return nil
}

func (c *call) validate() error {
	if c.countdown != nil && *c.countdown < 0 {
		return fmt.Errorf("%w: countdown %s is negative", ErrInvalidOption, *c.countdown)
	}
	if c.priority != nil && (*c.priority < 0 || *c.priority > 255) {
		return fmt.Errorf("%w: priority %d is outside 0..255", ErrInvalidOption, *c.priority)
	}
	if c.groupIndex != nil && *c.groupIndex < 0 {
		return fmt.Errorf("%w: group index %d is negative", ErrInvalidOption, *c.groupIndex)
	}
	if c.retries < 0 {
		return fmt.Errorf("%w: retries %d is negative", ErrInvalidOption, c.retries)
	}
	if c.timeLimit != nil && *c.timeLimit < 0 {
		return fmt.Errorf("%w: time limit is negative", ErrInvalidOption)
	}
	if c.softTimeLimit != nil && *c.softTimeLimit < 0 {
		return fmt.Errorf("%w: soft time limit is negative", ErrInvalidOption)
	}
	return nil
}

func checkEncoding(enc protocol.EncodeOptions) error {
	switch enc.Serializer {
	case "json", "msgpack":
	default:
		return fmt.Errorf("%w: serializer %q (json or msgpack)", ErrInvalidOption, enc.Serializer)
	}
	switch enc.Compression {
	case "", "zlib", "gzip":
	default:
		return fmt.Errorf("%w: compression %q (zlib or none)", ErrInvalidOption, enc.Compression)
	}
	return nil
}

func contentType(serializer string) string {
	if serializer == "msgpack" {
		return protocol.ContentTypeMsgpack
	}
	return protocol.ContentTypeJSON
}

// expirationMillis renders a TTL as Celery/kombu do: whole milliseconds,
// "0" when already expired.
func expirationMillis(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	return strconv.FormatInt(d.Milliseconds(), 10)
}

// RouteOf returns where Celery re-sends a task it received (a retry): the
// same queue through the default exchange when it was delivered through
// the default exchange (queue = delivery routing key), otherwise the
// original exchange and routing key.
func RouteOf(m *protocol.Message) Route {
	if m.Exchange == "" {
		return Route{RoutingKey: m.RoutingKey, Declare: m.RoutingKey}
	}
	return Route{Exchange: m.Exchange, RoutingKey: m.RoutingKey}
}
