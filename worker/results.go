package worker

import (
	"context"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
)

// resultWriter builds the result metas Celery stores and writes them to
// the result backend, retrying a failing backend a few times.
type resultWriter struct {
	backend  result.Backend // nil: results are not stored
	hostname string
	pid      int
	extended bool // Config.ResultExtended
	log      *zap.Logger
	// stop ends the waits between retries (closed by a cold shutdown).
	stop <-chan struct{}
	// retries counts the writes tried again (Stats.StoreRetries).
	retries atomic.Int64
}

// started is the STARTED meta Celery stores.
func (r *resultWriter) started(msg *protocol.Message) *result.Meta {
	return r.meta(msg, result.Started, protocol.Dict{{Key: "pid", Value: int64(r.pid)}, {Key: "hostname", Value: r.hostname}}, "", nil)
}

// doneMeta is a meta with room for its date_done, so that a final meta
// takes one allocation, not two.
type doneMeta struct {
	meta result.Meta
	done time.Time
}

// meta builds the result meta of msg in state st.
func (r *resultWriter) meta(msg *protocol.Message, st result.State, value any, tb string, children []any) *result.Meta {
	var m *result.Meta
	if st.Ready() {
		dm := &doneMeta{done: time.Now().UTC()}
		dm.meta.DateDone = &dm.done
		m = &dm.meta
	} else {
		m = &result.Meta{}
	}
	m.TaskID = msg.ID
	m.Status = st
	m.Result = value
	m.Traceback = tb
	m.Children = children
	m.GroupID = msg.GroupID
	m.ParentID = msg.ParentID
	m.ReplyTo = msg.ReplyTo
	m.CorrelationID = msg.CorrelationID
	if r.extended {
		m.Extended = true
		m.Name = msg.Task
		m.Args = msg.Args
		m.Kwargs = msg.Kwargs
		m.Worker = r.hostname
		m.Retries = msg.Retries
		m.Queue = msg.RoutingKey
		if names := msg.StampedHeaders(); len(names) > 0 {
			m.StampedHeaders, m.Stamps = names, msg.Stamps()
		}
	}
	return m
}

// store writes m to the backend, retrying a failing backend a few times.
func (r *resultWriter) store(ctx context.Context, m *result.Meta) error {
	if r.backend == nil {
		return nil
	}
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if attempt > 0 {
			select {
			case <-time.After(time.Duration(attempt*attempt) * 100 * time.Millisecond):
			case <-r.stop:
				return err
			}
		}
		if err = r.backend.Store(ctx, m); err == nil {
			return nil
		}
		if isEncodeError(err) {
			return err
		}
		r.retries.Add(1)
		r.log.Warn("store result failed, retrying", zap.String("id", m.TaskID), zap.Error(err))
	}
	r.log.Error("store result failed", zap.String("id", m.TaskID), zap.Error(err))
	return err
}

func (r *resultWriter) storeFailure(ctx context.Context, msg *protocol.Message, exc *protocol.Exception, tb string, children []any) error {
	return r.store(ctx, r.meta(msg, result.Failure, exc.Value(), tb, children))
}
