package control

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/gworker/gworker/events"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/worker"
)

// DefaultTimeout is how long Broadcast waits for replies (Celery's
// inspect timeout).
const DefaultTimeout = time.Second

// Client sends control commands to Celery and gworker nodes, as
// app.control does.
type Client struct {
	t     Transport
	clock *events.Clock
	oid   string
	log   *zap.Logger
	queue QueueOptions
}

// NewClient returns a client on t; clock may be nil; log may be nil.
func NewClient(t Transport, clock *events.Clock, log *zap.Logger) *Client {
	if clock == nil {
		clock = &events.Clock{}
	}
	if log == nil {
		log = zap.NewNop()
	}
	return &Client{t: t, clock: clock, oid: uuid4(), log: log}
}

// WithReplyQueue makes c declare its reply queue as o says (Celery 5.6
// uses control_queue_durable and control_queue_exclusive for the reply
// queue too); it returns c, or an error for options o.Validate refuses.
func (c *Client) WithReplyQueue(o QueueOptions) (*Client, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	c.queue = o
	return c, nil
}

func uuid4() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// BroadcastOptions choose the nodes and the replies.
type BroadcastOptions struct {
	// Destination lists the nodes; empty means all.
	Destination []string
	// Pattern and Matcher ("glob" or "pcre") select nodes by name.
	Pattern, Matcher string
	// Reply asks for replies and waits Timeout for them (or Limit of
	// them).
	Reply   bool
	Timeout time.Duration
	Limit   int
}

// Reply is one node's answer.
type Reply struct {
	Node  string
	Value any
}

// ErrNoReply is returned when replies were asked for and none came.
var ErrNoReply = errors.New("control: no nodes replied")

// Broadcast sends method with arguments to the selected nodes and, with
// Reply, collects their replies until the timeout or the limit.
func (c *Client) Broadcast(ctx context.Context, method string, arguments map[string]any, o BroadcastOptions) ([]Reply, error) {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Limit <= 0 && len(o.Destination) > 0 {
		o.Limit = len(o.Destination)
	}
	if err := c.t.DeclareExchange(ctx, Exchange, "fanout", false); err != nil {
		return nil, err
	}
	var sub Subscription
	ticket := ""
	if o.Reply {
		if err := c.t.DeclareExchange(ctx, ReplyExchange, "direct", false); err != nil {
			return nil, err
		}
		var err error
		sub, err = c.t.Subscribe(ctx, c.queue.apply(QueueSpec{Name: c.oid + "." + ReplyExchange, Exchange: ReplyExchange, ExchangeType: "direct",
			RoutingKey: c.oid, Expires: QueueExpires, MessageTTL: QueueTTL}))
		if err != nil {
			return nil, err
		}
		defer sub.Close()
		ticket = uuid4()
	}
	if arguments == nil {
		arguments = map[string]any{}
	}
	var dest, pattern, matcher any
	if len(o.Destination) > 0 {
		l := make([]any, len(o.Destination))
		for i, d := range o.Destination {
			l[i] = d
		}
		dest = l
	}
	if o.Pattern != "" {
		pattern, matcher = o.Pattern, o.Matcher
	}
	body := protocol.Dict{
		{Key: "method", Value: method}, {Key: "arguments", Value: arguments},
		{Key: "destination", Value: dest}, {Key: "pattern", Value: pattern}, {Key: "matcher", Value: matcher},
	}
	if o.Reply {
		body = append(body, protocol.Item{Key: "ticket", Value: ticket},
			protocol.Item{Key: "reply_to", Value: protocol.Dict{{Key: "exchange", Value: ReplyExchange}, {Key: "routing_key", Value: c.oid}}})
	}
	b, err := protocol.MarshalJSON(body)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(o.Timeout)
	msg := &protocol.RawMessage{
		Headers:         map[string]any{"clock": c.clock.Forward(), "expires": float64(deadline.UnixMicro()) / 1e6},
		ContentType:     protocol.ContentTypeJSON,
		ContentEncoding: "utf-8",
		DeliveryMode:    2,
		Body:            b,
	}
	if err := c.t.Publish(ctx, Exchange, "", msg); err != nil {
		return nil, err
	}
	if !o.Reply {
		return nil, nil
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	var out []Reply
	for {
		select {
		case <-ctx.Done():
			return out, ctx.Err()
		case <-timer.C:
			if len(out) == 0 {
				return nil, ErrNoReply
			}
			return out, nil
		case m, ok := <-sub.Messages():
			if !ok {
				return out, errors.New("control: the reply queue was closed")
			}
			if t, _ := m.Headers["ticket"].(string); t != ticket {
				continue
			}
			if cl, ok := clockHeader(m.Headers); ok {
				c.clock.Adjust(cl)
			}
			v, err := protocol.UnmarshalJSON(m.Body)
			if err != nil {
				c.log.Warn("control: bad reply", zap.Error(err))
				continue
			}
			obj, ok := v.(map[string]any)
			if !ok {
				continue
			}
			for node, val := range obj {
				out = append(out, Reply{Node: node, Value: val})
			}
			if o.Limit > 0 && len(out) >= o.Limit {
				return out, nil
			}
		}
	}
}

// Mingle is Celery's start-up sync: it asks the other nodes (hello) for
// their revoked ids and merges them into rs, and moves the clock past
// theirs. It returns the nodes that replied.
func (c *Client) Mingle(ctx context.Context, node string, rs *worker.RevokedSet, timeout time.Duration) ([]string, error) {
	replies, err := c.Broadcast(ctx, "hello", map[string]any{"from_node": node, "revoked": RevokedData(rs)},
		BroadcastOptions{Reply: true, Timeout: timeout})
	if err != nil && !errors.Is(err, ErrNoReply) {
		return nil, err
	}
	var nodes []string
	for _, r := range replies {
		if r.Node == node {
			continue
		}
		m, ok := r.Value.(map[string]any)
		if !ok {
			continue
		}
		nodes = append(nodes, r.Node)
		if rev, ok := m["revoked"].(map[string]any); ok {
			MergeRevoked(rs, rev)
		}
		if cl, ok := m["clock"].(int64); ok {
			c.clock.Adjust(cl)
		}
	}
	return nodes, nil
}
