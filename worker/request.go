package worker

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/gworker/gworker/protocol"
)

// Request is what a running task knows about itself, as Celery's
// task.request: its id, retries, headers, delivery information and the
// worker's node name. Tasks read it with RequestFromContext.
type Request struct {
	ID            string
	Task          string
	Args          []any
	Kwargs        map[string]any
	Retries       int
	RootID        string
	ParentID      string
	GroupID       string
	GroupIndex    *int
	ETA           *time.Time
	Expires       *time.Time
	Headers       map[string]any
	ReplyTo       string
	CorrelationID string
	// AppID is the message's app_id property (in Celery's
	// request.properties).
	AppID        string
	Hostname     string
	DeliveryInfo DeliveryInfo
	// Message is the decoded task message.
	Message *protocol.Message

	mu       sync.Mutex
	children []any
	// job is the job the request is of, for the middleware's next.
	job *job

	// log is the worker's logger; taskLog, built from it on first use,
	// adds the task's name and id.
	log     *zap.Logger
	logOnce sync.Once
	taskLog *zap.Logger
}

// AddChild records a result (in its tuple form, see result.AsyncResult's
// AsTuple) of a task sent while this one ran; the worker stores it in the
// task's children, as Celery does for subtasks.
func (r *Request) AddChild(tuple any) {
	r.mu.Lock()
	r.children = append(r.children, tuple)
	r.mu.Unlock()
}

// Children returns the recorded children.
func (r *Request) Children() []any {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]any(nil), r.children...)
}

// DeliveryInfo tells where a message came from.
type DeliveryInfo struct {
	Exchange    string
	RoutingKey  string
	Priority    uint8
	Redelivered bool
}

type requestKey struct{}

// RequestFromContext returns the request of the task running under ctx.
func RequestFromContext(ctx context.Context) (*Request, bool) {
	r, ok := ctx.Value(requestKey{}).(*Request)
	return r, ok
}

// LoggerFromContext returns the task's logger (with the task name and id as
// fields), or a no-op logger outside tasks.
func LoggerFromContext(ctx context.Context) *zap.Logger {
	if r, ok := RequestFromContext(ctx); ok && r.log != nil {
		return r.logger()
	}
	return zap.NewNop()
}

// logger returns the task's logger, built the first time the task asks
// for it: most tasks never log, and building it costs a few allocations.
func (r *Request) logger() *zap.Logger {
	r.logOnce.Do(func() {
		name := r.Task
		if r.Message != nil {
			name = r.Message.Name()
		}
		r.taskLog = r.log.With(zap.String("task", name), zap.String("id", r.ID))
	})
	return r.taskLog
}

// withRequest returns ctx carrying r, and with it the task's logger built
// from l.
func withRequest(ctx context.Context, r *Request, l *zap.Logger) context.Context {
	r.log = l
	return context.WithValue(ctx, requestKey{}, r)
}
