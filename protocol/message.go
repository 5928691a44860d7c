package protocol

import "time"

// Content types Celery uses for task and result bodies.
const (
	ContentTypeJSON    = "application/json"
	ContentTypeMsgpack = "application/x-msgpack"
	ContentTypeYAML    = "application/x-yaml"
	ContentTypePickle  = "application/x-python-serialize"
)

// RawMessage is a message as a transport carries it: properties, the
// application header table and the (possibly compressed) body. Transports
// fill it on delivery; encoders fill it for publishing.
//
// Header values use the value types of the package (see the package doc);
// transports convert their own field types (AMQP int32, int64, decimal,
// timestamp, ...) to those.
type RawMessage struct {
	Headers         map[string]any
	ContentType     string
	ContentEncoding string
	Body            []byte

	CorrelationID string
	ReplyTo       string
	// AppID is the app_id property (kombu's apply_async(app_id=...)).
	AppID        string
	DeliveryMode uint8
	// Priority is the message priority; HasPriority is false when the
	// property was absent (Celery treats that as 0).
	Priority    uint8
	HasPriority bool
	// Expiration is the AMQP per-message TTL in milliseconds, as a decimal
	// string, or "".
	Expiration string

	// Delivery information, set on consumed messages.
	Exchange    string
	RoutingKey  string
	Redelivered bool
}

// Message is a task message decoded from protocol v2, v1 or a hybrid of the
// two: every protocol gives the same in-memory task.
type Message struct {
	// Protocol is 2 or 1, the protocol the message arrived in.
	Protocol int

	ID     string
	Task   string
	Args   []any
	Kwargs map[string]any

	// Embed: what runs after the task. Chain is in wire order: the next task
	// is the LAST element.
	Callbacks []Signature
	Errbacks  []Signature
	Chain     []Signature
	Chord     *Signature

	ETA     *time.Time
	Expires *time.Time
	Retries int
	// TimeLimit and SoftTimeLimit are in seconds; nil means none given.
	TimeLimit     *float64
	SoftTimeLimit *float64

	RootID     string
	ParentID   string
	GroupID    string
	GroupIndex *int

	Shadow       string
	Origin       string
	Lang         string
	ArgsRepr     string
	KwargsRepr   string
	IgnoreResult bool

	// Headers is the whole header table as delivered, custom keys included
	// (empty for protocol 1).
	Headers map[string]any

	// Properties and delivery information copied from the RawMessage.
	ReplyTo         string
	CorrelationID   string
	AppID           string
	ContentType     string
	ContentEncoding string
	Priority        uint8
	HasPriority     bool
	Exchange        string
	RoutingKey      string
	Redelivered     bool

	// BodySize is the size of the body Decode read, after decompression:
	// what the message costs in memory besides its decoded values. Encode
	// ignores it.
	BodySize int
}

// Name returns the display name of the task: the shadow name when one was
// given, the task name otherwise.
func (m *Message) Name() string {
	if m.Shadow != "" {
		return m.Shadow
	}
	return m.Task
}
