package control

import (
	"context"
	"errors"
	"fmt"
	"path"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/gworker/gworker/events"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/worker"
)

// Defaults of Config.
const (
	DefaultReplyTimeout = 5 * time.Second
)

// Config configures a Node. Transport and Worker are required.
type Config struct {
	Transport Transport
	Worker    *worker.Worker
	// Events is the node's event dispatcher, for enable_events,
	// disable_events and heartbeat; nil makes those commands fail.
	Events *events.Dispatcher
	// Clock is the node's Lamport clock; default the dispatcher's, or a
	// new one.
	Clock *events.Clock
	// Hostname is the node name; default the worker's.
	Hostname string
	// Shutdown is called by the shutdown command; it must not block. nil
	// makes the command fail.
	Shutdown func()
	// Broker is the `broker` entry of `inspect stats` (see BrokerInfo).
	Broker protocol.Dict
	// Conf is what `inspect conf` reports: the node's non-default
	// settings, by Celery's setting names.
	Conf protocol.Dict
	// Software is the version reported by `inspect report`.
	Software string
	// AppName and AppVersion name the program that embeds gworker, for
	// `inspect stats` (key "app") and `inspect report`.
	AppName, AppVersion string
	// ReplyTimeout bounds publishing one reply; default 5 s.
	ReplyTimeout time.Duration
	// Queue says how the node's pidbox queue is declared (Celery 5.6's
	// control_queue_durable and control_queue_exclusive).
	Queue QueueOptions
	// Logger receives the node's log lines; nil logs nothing.
	Logger *zap.Logger
}

// Node answers remote control commands for one worker.
type Node struct {
	cfg     Config
	log     *zap.Logger
	clock   *events.Clock
	started time.Time
	cmds    map[string]command

	mu       sync.Mutex
	sub      Subscription
	done     chan struct{}
	declared map[string]bool // reply exchanges declared

	logged sync.Map // reasons of bad messages already logged at WARNING
	bad    atomic.Int64
}

// ErrConfig is wrapped by New's errors.
var ErrConfig = errors.New("control: invalid config")

// New checks cfg and returns a node.
func New(cfg Config) (*Node, error) {
	if cfg.Transport == nil || cfg.Worker == nil {
		return nil, fmt.Errorf("%w: Transport and Worker are required", ErrConfig)
	}
	if err := cfg.Queue.Validate(); err != nil {
		return nil, err
	}
	if cfg.Hostname == "" {
		cfg.Hostname = cfg.Worker.Hostname()
	}
	if cfg.ReplyTimeout <= 0 {
		cfg.ReplyTimeout = DefaultReplyTimeout
	}
	n := &Node{cfg: cfg, log: cfg.Logger, clock: cfg.Clock, started: time.Now(), declared: map[string]bool{}}
	if n.log == nil {
		n.log = zap.NewNop()
	}
	if n.clock == nil && cfg.Events != nil {
		n.clock = cfg.Events.Clock()
	}
	if n.clock == nil {
		n.clock = &events.Clock{}
	}
	n.cmds = n.commands()
	return n, nil
}

// Hostname returns the node name.
func (n *Node) Hostname() string { return n.cfg.Hostname }

// BadMessages returns how many control messages could not be handled.
func (n *Node) BadMessages() int64 { return n.bad.Load() }

// Start declares the mailbox exchanges and the node's queue and starts
// answering commands, until Stop.
func (n *Node) Start(ctx context.Context) error {
	t := n.cfg.Transport
	if err := t.DeclareExchange(ctx, Exchange, "fanout", false); err != nil {
		return err
	}
	if err := t.DeclareExchange(ctx, ReplyExchange, "direct", false); err != nil {
		return err
	}
	n.warnIfMailboxInUse(ctx)
	sub, err := t.Subscribe(ctx, n.cfg.Queue.apply(QueueSpec{Name: QueueName(n.cfg.Hostname), Exchange: Exchange, ExchangeType: "fanout",
		Expires: QueueExpires, MessageTTL: QueueTTL}))
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.declared[ReplyExchange] = true
	n.sub = sub
	n.done = make(chan struct{})
	done := n.done
	n.mu.Unlock()
	go func() {
		defer close(done)
		for m := range sub.Messages() {
			n.Handle(context.Background(), m)
		}
	}()
	return nil
}

// ConsumerCounter is an optional interface of a Transport that can tell
// how many consumers a queue has (RabbitMQ's passive declaration); a
// missing queue has none.
type ConsumerCounter interface {
	QueueConsumers(ctx context.Context, name string) (int, error)
}

// warnIfMailboxInUse warns, as kombu's pidbox does, when another node of
// the same name already consumes this node's mailbox: the two would
// answer each other's commands.
func (n *Node) warnIfMailboxInUse(ctx context.Context) {
	cc, ok := n.cfg.Transport.(ConsumerCounter)
	if !ok {
		return
	}
	if c, err := cc.QueueConsumers(ctx, QueueName(n.cfg.Hostname)); err == nil && c > 0 {
		n.log.Warn("A node named " + n.cfg.Hostname + " is already using this process mailbox!\n\n" +
			"Maybe you forgot to shutdown the other node or did not do so properly?\n" +
			"Or if you meant to start multiple nodes on the same host please make sure\n" +
			"you give each node a unique node name!")
	}
}

// Stop stops answering commands and waits for the command in progress.
func (n *Node) Stop() error {
	n.mu.Lock()
	sub, done := n.sub, n.done
	n.sub = nil
	n.mu.Unlock()
	if sub == nil {
		return nil
	}
	err := sub.Close()
	<-done
	return err
}

// request is a decoded control message.
type request struct {
	method      string
	arguments   map[string]any
	destination []string
	pattern     string
	matcher     string
	ticket      string
	replyEx     string
	replyKey    string
	hasReply    bool
}

// badMessage logs a control message that cannot be handled: at WARNING the
// first time for each reason, then at DEBUG, so a flood does not flood the
// log.
func (n *Node) badMessage(reason string, err error, body []byte) {
	n.bad.Add(1)
	lvl := zap.DebugLevel
	if _, seen := n.logged.LoadOrStore(reason, true); !seen {
		lvl = zap.WarnLevel
	}
	if len(body) > 256 {
		body = body[:256]
	}
	if ce := n.log.Check(lvl, "control: ignoring a bad control message"); ce != nil {
		ce.Write(zap.String("reason", reason), zap.Error(err), zap.ByteString("body", body))
	}
}

func decodeRequest(m *protocol.RawMessage) (*request, string, error) {
	if m.ContentType != "" && m.ContentType != protocol.ContentTypeJSON {
		return nil, "content-type", fmt.Errorf("content type %q is not accepted (json only)", m.ContentType)
	}
	v, err := protocol.UnmarshalJSON(m.Body)
	if err != nil {
		return nil, "json", err
	}
	body, ok := v.(map[string]any)
	if !ok {
		return nil, "not-an-object", fmt.Errorf("body is a %s, not an object", protocol.TypeName(v))
	}
	r := &request{}
	if r.method, ok = body["method"].(string); !ok || r.method == "" {
		return nil, "method", errors.New("no method name")
	}
	switch a := body["arguments"].(type) {
	case nil:
		r.arguments = map[string]any{}
	case map[string]any:
		r.arguments = a
	default:
		return nil, "arguments", fmt.Errorf("arguments is a %s, not an object", protocol.TypeName(a))
	}
	keepArgumentOrder(r, m.Body)
	switch d := body["destination"].(type) {
	case nil:
	case string:
		r.destination = []string{d}
	case []any:
		for _, x := range d {
			if s, ok := x.(string); ok {
				r.destination = append(r.destination, s)
			}
		}
	default:
		return nil, "destination", fmt.Errorf("destination is a %s", protocol.TypeName(d))
	}
	r.pattern, _ = body["pattern"].(string)
	r.matcher, _ = body["matcher"].(string)
	r.ticket, _ = body["ticket"].(string)
	if rt, ok := body["reply_to"].(map[string]any); ok {
		r.replyEx, _ = rt["exchange"].(string)
		r.replyKey, ok = rt["routing_key"].(string)
		r.hasReply = ok
	}
	return r, "", nil
}

// forMe applies kombu's rules: a destination list names the node, or
// pattern and matcher match it, or neither is given.
func (n *Node) forMe(r *request) bool {
	if len(r.destination) > 0 {
		for _, d := range r.destination {
			if d == n.cfg.Hostname {
				return true
			}
		}
		return false
	}
	if r.pattern != "" && r.matcher != "" {
		switch r.matcher {
		case "glob":
			ok, err := path.Match(r.pattern, n.cfg.Hostname)
			return err == nil && ok
		case "pcre":
			re, err := regexp.Compile(r.pattern)
			if err != nil {
				return false
			}
			loc := re.FindStringIndex(n.cfg.Hostname)
			return loc != nil && loc[0] == 0 // re.match: anchored at the start
		default:
			return false
		}
	}
	return true
}

// Handle handles one control message: it never panics and never blocks
// longer than the command and its reply take.
func (n *Node) Handle(ctx context.Context, m *protocol.RawMessage) {
	defer func() {
		if p := recover(); p != nil {
			n.badMessage("panic", fmt.Errorf("%v", p), m.Body)
		}
	}()
	if c, ok := clockHeader(m.Headers); ok {
		n.clock.Adjust(c)
	}
	r, reason, err := decodeRequest(m)
	if err != nil {
		n.badMessage(reason, err, m.Body)
		return
	}
	if !n.forMe(r) {
		return
	}
	reply := n.dispatch(ctx, r)
	if r.hasReply {
		n.reply(ctx, r, reply)
	}
}

func clockHeader(h map[string]any) (int64, bool) {
	switch c := h["clock"].(type) {
	case int64:
		return c, true
	case int32:
		return int64(c), true
	case int:
		return int64(c), true
	case float64:
		return int64(c), true
	}
	return 0, false
}

// errorReply is what a failing command replies, as kombu's dispatch.
func errorReply(err error) protocol.Dict {
	var pe *protocol.Exception
	if errors.As(err, &pe) {
		return protocol.Dict{{Key: "error", Value: pe.Error()}}
	}
	return protocol.Dict{{Key: "error", Value: err.Error()}}
}

func (n *Node) dispatch(ctx context.Context, r *request) (reply any) {
	cmd, ok := n.cmds[r.method]
	if !ok {
		// Replied to as Celery does; logged at ERROR the first time only,
		// so that a flood does not flood the log.
		exc := protocol.NewException("KeyError", r.method)
		n.bad.Add(1)
		lvl := zap.DebugLevel
		if _, seen := n.logged.LoadOrStore("unknown-command", true); !seen {
			lvl = zap.ErrorLevel
		}
		if ce := n.log.Check(lvl, "pidbox command error: "+exc.Error()); ce != nil {
			ce.Write(zap.String("reason", "unknown-command"))
		}
		return errorReply(exc)
	}
	defer func() {
		if p := recover(); p != nil {
			exc := protocol.NewException("RuntimeError", fmt.Sprintf("panic: %v", p))
			n.log.Error("pidbox command error: "+exc.Error(), zap.String("method", r.method))
			reply = errorReply(exc)
		}
	}()
	v, err := cmd(ctx, args(r.arguments))
	if err != nil {
		n.log.Error("pidbox command error: "+err.Error(), zap.String("method", r.method))
		return errorReply(err)
	}
	return v
}

func (n *Node) reply(ctx context.Context, r *request, v any) {
	body, err := protocol.MarshalJSON(protocol.Dict{{Key: n.cfg.Hostname, Value: v}})
	if err != nil {
		n.log.Error("control: encode reply", zap.String("method", r.method), zap.Error(err))
		body, _ = protocol.MarshalJSON(protocol.Dict{{Key: n.cfg.Hostname, Value: errorReply(err)}})
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.ReplyTimeout)
	defer cancel()
	ex := r.replyEx
	n.mu.Lock()
	known := n.declared[ex]
	n.mu.Unlock()
	if !known && ex != "" {
		if err := n.cfg.Transport.DeclareExchange(ctx, ex, "direct", false); err != nil {
			n.badMessage("reply-exchange", err, nil)
			return
		}
		n.mu.Lock()
		if len(n.declared) < 64 {
			n.declared[ex] = true
		}
		n.mu.Unlock()
	}
	msg := &protocol.RawMessage{
		Headers:         map[string]any{"ticket": r.ticket, "clock": n.clock.Forward()},
		ContentType:     protocol.ContentTypeJSON,
		ContentEncoding: "utf-8",
		DeliveryMode:    1,
		Body:            body,
	}
	if err := n.cfg.Transport.Publish(ctx, ex, r.replyKey, msg); err != nil {
		n.badMessage("reply", err, nil)
	}
}

// args reads command arguments with Python's leniency.
type args map[string]any

func (a args) str(k string) string {
	s, _ := a[k].(string)
	return s
}

func (a args) boolean(k string) bool {
	switch v := a[k].(type) {
	case bool:
		return v
	case string:
		switch v {
		case "1", "true", "True", "yes", "on":
			return true
		}
	case int64:
		return v != 0
	}
	return false
}

func (a args) int(k string, def int64) (int64, error) {
	switch v := a[k].(type) {
	case nil:
		return def, nil
	case int64:
		return v, nil
	case float64:
		return int64(v), nil
	case string:
		var i int64
		if _, err := fmt.Sscan(v, &i); err != nil {
			return 0, protocol.NewException("ValueError", fmt.Sprintf("invalid literal for int() with base 10: %s", protocol.PyRepr(v)))
		}
		return i, nil
	}
	return 0, protocol.NewException("TypeError", fmt.Sprintf("%s must be an int, not %s", k, protocol.TypeName(a[k])))
}

// seconds reads a float number of seconds; ok is false when absent (None).
func (a args) seconds(k string) (time.Duration, bool, error) {
	switch v := a[k].(type) {
	case nil:
		return 0, false, nil
	case int64:
		return time.Duration(v) * time.Second, true, nil
	case float64:
		return time.Duration(v * float64(time.Second)), true, nil
	case string:
		var f float64
		if _, err := fmt.Sscan(v, &f); err != nil {
			return 0, false, protocol.NewException("ValueError", "could not convert string to float: "+protocol.PyRepr(v))
		}
		return time.Duration(f * float64(time.Second)), true, nil
	}
	return 0, false, protocol.NewException("TypeError", k+" must be a number")
}

// strs reads one string or a list of strings.
func (a args) strs(k string) []string {
	switch v := a[k].(type) {
	case string:
		return []string{v}
	case []any:
		out := make([]string, 0, len(v))
		for _, x := range v {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}
