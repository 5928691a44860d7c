package producer

import (
	"time"

	"github.com/gworker/gworker/protocol"
)

// Option sets one apply_async option of a task being sent. Options are
// applied in order; a later option overrides an earlier one.
type Option func(*call)

// call holds the options of one send.
type call struct {
	queue      string
	routingKey string
	exchange   string

	countdown *time.Duration
	eta       *time.Time
	expiresIn *time.Duration
	expiresAt *time.Time

	priority     *int
	taskID       string
	headers      map[string]any
	ignoreResult bool
	serializer   string
	compression  string

	timeLimit     *float64
	softTimeLimit *float64

	link      []protocol.Signature
	linkError []protocol.Signature
	chain     []protocol.Signature
	chord     *protocol.Signature

	parentID   string
	rootID     string
	groupID    string
	groupIndex *int
	shadow     string
	retries    int
	replyTo    string
}

// Queue routes the task to the named queue (default exchange "", routing
// key = queue name). As with Celery, an explicit queue leaves the priority
// property unset unless Priority is also given.
func Queue(name string) Option { return func(c *call) { c.queue = name } }

// Exchange publishes to the named exchange instead of the default exchange.
// It takes effect only together with RoutingKey, as in Celery; otherwise the
// message goes to the queue through the default exchange.
func Exchange(name string) Option { return func(c *call) { c.exchange = name } }

// RoutingKey sets the routing key used with Exchange.
func RoutingKey(key string) Option { return func(c *call) { c.routingKey = key } }

// Countdown delays execution: the eta header becomes now + d.
func Countdown(d time.Duration) Option {
	return func(c *call) { c.countdown = &d; c.eta = nil }
}

// ETA sets the earliest execution time.
func ETA(t time.Time) Option { return func(c *call) { c.eta = &t; c.countdown = nil } }

// Expires sets an absolute expiry time. The expires header holds it, and the
// AMQP expiration property holds the milliseconds left when sending (0 when
// already past), as Celery 5.2.6 does.
func Expires(t time.Time) Option {
	return func(c *call) { c.expiresAt = &t; c.expiresIn = nil }
}

// ExpiresIn sets a relative expiry (Celery's expires=<seconds>).
func ExpiresIn(d time.Duration) Option {
	return func(c *call) { c.expiresIn = &d; c.expiresAt = nil }
}

// Priority sets the message priority (0-255; RabbitMQ caps it at the
// queue's x-max-priority).
func Priority(p int) Option { return func(c *call) { c.priority = &p } }

// TaskID sets the task id instead of a new random one.
func TaskID(id string) Option { return func(c *call) { c.taskID = id } }

// Headers adds custom headers to the message's header table, as Celery's
// apply_async(headers=...) does. Values are converted by
// protocol.HeaderValue to the value types every transport carries to Python
// unchanged (int64, float64, string, bool, nil, []any, map[string]any);
// []byte must be UTF-8 text, integers must fit int64. The 16 standard task headers and "compression" are
// always written from the message fields: set them with the matching
// options, not here.
func Headers(h map[string]any) Option {
	return func(c *call) {
		if c.headers == nil {
			c.headers = make(map[string]any, len(h))
		}
		for k, v := range h {
			c.headers[k] = v
		}
	}
}

// IgnoreResult asks the worker not to store a SUCCESS result.
func IgnoreResult(ignore bool) Option { return func(c *call) { c.ignoreResult = ignore } }

// Serializer selects "json" or "msgpack" for this message.
func Serializer(name string) Option { return func(c *call) { c.serializer = name } }

// Compression selects "zlib" (or "gzip", its alias) or "" for this message.
func Compression(name string) Option { return func(c *call) { c.compression = name } }

// TimeLimit sets the hard time limit.
func TimeLimit(d time.Duration) Option {
	return func(c *call) { s := seconds(d); c.timeLimit = &s }
}

// SoftTimeLimit sets the soft time limit.
func SoftTimeLimit(d time.Duration) Option {
	return func(c *call) { s := seconds(d); c.softTimeLimit = &s }
}

// Link adds callbacks run (as new tasks, with the result prepended to their
// args) when the task succeeds.
func Link(sigs ...protocol.Signature) Option {
	return func(c *call) { c.link = append(c.link, sigs...) }
}

// LinkError adds errbacks sent when the task fails (old style: the failed
// task id is prepended to their args).
func LinkError(sigs ...protocol.Signature) Option {
	return func(c *call) { c.linkError = append(c.linkError, sigs...) }
}

// Chain sets embed.chain: the tasks to run after this one, in wire order
// (the next task is the LAST element).
func Chain(sigs ...protocol.Signature) Option {
	return func(c *call) { c.chain = append([]protocol.Signature(nil), sigs...) }
}

// Chord sets embed.chord: the body of the chord this task is a header part
// of.
func Chord(body protocol.Signature) Option { return func(c *call) { c.chord = &body } }

// ParentID sets the id of the task that sends this one.
func ParentID(id string) Option { return func(c *call) { c.parentID = id } }

// RootID sets the id of the first task of the workflow (default: the task's
// own id).
func RootID(id string) Option { return func(c *call) { c.rootID = id } }

// GroupID sets the group header.
func GroupID(id string) Option { return func(c *call) { c.groupID = id } }

// GroupIndex sets the position of a chord header part (0..n-1).
func GroupIndex(i int) Option { return func(c *call) { c.groupIndex = &i } }

// Shadow sets the display name used in logs and events instead of the task
// name.
func Shadow(name string) Option { return func(c *call) { c.shadow = name } }

// Retries sets the retries header (0 on a first delivery).
func Retries(n int) Option { return func(c *call) { c.retries = n } }

// ReplyTo sets the reply_to property instead of the producer's own.
func ReplyTo(oid string) Option { return func(c *call) { c.replyTo = oid } }

func seconds(d time.Duration) float64 { return d.Seconds() }
