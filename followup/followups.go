package followup

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/gworker/gworker/canvas"
	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/worker"
)

// celeryFollowups sends follow-up messages through a producer and keeps
// chord state in the result backend, as a Celery worker does.
type celeryFollowups struct {
	p       *producer.Producer
	backend result.Backend
	log     *zap.Logger
}

// NewFollowups returns the Followups of a Celery worker: callbacks, chains,
// errbacks and chord bodies are applied through p (canvas.ApplyFromMessage)
// and chord parts are counted in backend when it is a
// result.ChordCounter (Redis, django-celery-results); on other backends
// celery.chord_unlock completes chords. backend may be nil.
func NewFollowups(p *producer.Producer, backend result.Backend, log *zap.Logger) worker.Followups {
	if log == nil {
		log = zap.NewNop()
	}
	return &celeryFollowups{p: p, backend: backend, log: log}
}

func rootOf(msg *protocol.Message) string {
	if msg.RootID != "" {
		return msg.RootID
	}
	return msg.ID
}

// AfterSuccess applies link callbacks, then the next chain element, each
// with the return value prepended to its arguments (unless immutable).
func (f *celeryFollowups) AfterSuccess(ctx context.Context, msg *protocol.Message, value any) ([]any, error) {
	var children []any
	var errs []error
	base := canvas.ApplyOptions{ParentID: msg.ID, RootID: rootOf(msg)}
	c, err := canvas.ApplyCallbacks(ctx, f.p, msg.Callbacks, value, base)
	children = append(children, c...)
	errs = append(errs, err)
	c, err = canvas.ApplyChainNext(ctx, f.p, msg.Chain, value, base)
	children = append(children, c...)
	errs = append(errs, err)
	return children, errors.Join(errs...)
}

// AfterFailure stores the failure under every later chain element's id (so
// that the chain's final result fails too), counts chord parts among them,
// and applies old-style errbacks with the failed task's id as argument.
func (f *celeryFollowups) AfterFailure(ctx context.Context, msg *protocol.Message, exc *protocol.Exception, tb string) error {
	var errs []error
	for i := range msg.Chain {
		elem := &msg.Chain[i]
		em := elementMessage(elem, msg)
		if em.ID != "" && f.backend != nil {
			now := time.Now().UTC()
			errs = append(errs, f.backend.Store(ctx, &result.Meta{
				TaskID: em.ID, Status: result.Failure, Result: exc.Value(), Traceback: tb,
				DateDone: &now, GroupID: em.GroupID, ParentID: em.ParentID,
			}))
		}
		if em.Chord != nil {
			errs = append(errs, f.ChordPart(ctx, em, result.Failure, exc.Value()))
		}
	}
	errbacks := worker.CallInlineErrbacks(ctx, msg, msg.Errbacks, exc, tb)
	_, err := canvas.ApplyErrbacks(ctx, f.p, errbacks, msg.ID, canvas.ApplyOptions{ParentID: msg.ID, RootID: rootOf(msg)})
	errs = append(errs, err)
	return errors.Join(errs...)
}

// elementMessage is the request Celery rebuilds for a chain element when
// it propagates a failure: id, group and chord from its options.
func elementMessage(sig *protocol.Signature, parent *protocol.Message) *protocol.Message {
	m := &protocol.Message{Task: sig.Task, RootID: rootOf(parent)}
	m.ID, _ = sig.Options["task_id"].(string)
	m.GroupID, _ = sig.Options["group_id"].(string)
	m.ParentID, _ = sig.Options["parent_id"].(string)
	if gi, ok := sig.Options["group_index"].(int64); ok {
		i := int(gi)
		m.GroupIndex = &i
	}
	if c, ok := sig.Options["chord"]; ok && c != nil {
		if body, err := protocol.SignatureFromValue(c); err == nil {
			m.Chord = &body
		}
	}
	return m
}

// ChordPart records a finished header part and, when it completes the
// chord, sends the body with the ordered results, or stores ChordError
// under the body's id when a part failed.
func (f *celeryFollowups) ChordPart(ctx context.Context, msg *protocol.Message, st result.State, value any) error {
	cb, ok := f.backend.(result.ChordCounter)
	if !ok {
		// No chord counter (Celery's database backend): as in Celery's
		// base on_chord_part_return, nothing to do here; the client sent
		// celery.chord_unlock, which polls the header's results.
		return nil
	}
	if msg.GroupID == "" {
		return fmt.Errorf("chord part %s has no group id", msg.ID)
	}
	complete, parts, err := cb.AddChordPart(ctx, msg.GroupID, msg.GroupIndex, result.ChordPart{TaskID: msg.ID, Status: st, Result: value})
	if err != nil || !complete {
		return err
	}
	body := *msg.Chord
	if saved, err := result.RestoreGroup(ctx, f.backend, msg.GroupID); err == nil {
		// A complex header (nested groups) was saved as a GroupResult:
		// Celery joins it instead of the flat list of parts.
		return f.chordFromSavedGroup(ctx, msg, &body, saved)
	} else if !errors.Is(err, result.ErrGroupNotFound) && !errors.Is(err, result.ErrNoBackend) {
		return err
	}
	values := make([]any, 0, len(parts))
	for _, p := range parts {
		if p.Status == result.Failure || p.Status == result.Revoked {
			reason := fmt.Sprintf("%v", p.Result)
			if exc, err := protocol.ExceptionFromValue(p.Result); err == nil {
				reason = exc.Error()
			}
			return f.chordError(ctx, msg, &body, fmt.Sprintf("Dependency %s raised %s", p.TaskID, reason))
		}
		values = append(values, p.Result)
	}
	_, err = canvas.ApplyFromMessage(ctx, f.p, body, []any{values}, canvas.ApplyOptions{ParentID: msg.ID, RootID: rootOf(msg)})
	if err != nil {
		return f.chordError(ctx, msg, &body, fmt.Sprintf("Callback error: %v", err))
	}
	return nil
}

func (f *celeryFollowups) chordError(ctx context.Context, msg *protocol.Message, body *protocol.Signature, text string) error {
	exc := &protocol.Exception{Type: "ChordError", Module: "celery.exceptions", Args: []any{text}}
	var errs []error
	if id, _ := body.Options["task_id"].(string); id != "" && f.backend != nil {
		now := time.Now().UTC()
		errs = append(errs, f.backend.Store(ctx, &result.Meta{
			TaskID: id, Status: result.Failure, Result: exc.Value(),
			Traceback: fmt.Sprintf("Traceback (most recent call last):\n  chord %s\n%s\n", msg.GroupID, exc.Error()),
			DateDone:  &now,
		}))
		// New-style errbacks get the request Celery makes up for the body
		// (chord_error_from_stack): its id, name and arguments.
		fake := &protocol.Message{ID: id, Task: body.Task, Args: body.Args, Kwargs: body.Kwargs, RootID: rootOf(msg), GroupID: msg.GroupID}
		errbacks := worker.CallInlineErrbacks(ctx, fake, linkErrors(body), exc, "")
		_, err := canvas.ApplyErrbacks(ctx, f.p, errbacks, id, canvas.ApplyOptions{ParentID: msg.ID, RootID: rootOf(msg)})
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// linkErrors reads a signature's link_error option.
func linkErrors(sig *protocol.Signature) []protocol.Signature {
	raw := sig.Options["link_error"]
	var list []any
	switch v := raw.(type) {
	case []any:
		list = v
	case nil:
		return nil
	default:
		list = []any{v}
	}
	var out []protocol.Signature
	for _, e := range list {
		if s, err := protocol.SignatureFromValue(e); err == nil {
			out = append(out, s)
		}
	}
	return out
}

// Retry publishes the task again as Celery's Task.retry does: same id,
// retries+1, the new eta, parent_id = the task's own id, same queue.
func (f *celeryFollowups) Retry(ctx context.Context, msg *protocol.Message, eta time.Time, args []any, kwargs map[string]any) error {
	m := *msg
	m.Retries++
	eta = eta.UTC()
	m.ETA = &eta
	m.ParentID = msg.ID
	m.Origin = ""
	m.ArgsRepr, m.KwargsRepr = "", ""
	if args != nil {
		m.Args = args
	}
	if kwargs != nil {
		m.Kwargs = kwargs
	}
	return f.p.Publish(ctx, &m, deliveryRoute(msg))
}

// Republish publishes a delivered message again, unchanged, to where it
// came from.
func (f *celeryFollowups) Republish(ctx context.Context, msg *protocol.Message, raw *protocol.RawMessage) error {
	return f.p.Publish(ctx, msg, deliveryRoute(msg))
}

// deliveryRoute sends a message back where it was delivered from: through
// the default exchange to its queue, or to its exchange and routing key.
func deliveryRoute(msg *protocol.Message) producer.Route {
	return producer.Route{Exchange: msg.Exchange, RoutingKey: msg.RoutingKey}
}

// chordFromSavedGroup completes a chord whose header was saved as a
// GroupResult: the body gets the joined values (nested groups as lists).
func (f *celeryFollowups) chordFromSavedGroup(ctx context.Context, msg *protocol.Message, body *protocol.Signature, g *result.GroupResult) error {
	jctx, cancel := context.WithTimeout(result.AllowJoinResult(ctx), 30*time.Second)
	defer cancel()
	values, err := g.JoinNative(jctx, result.WithPropagate(true))
	if err != nil {
		var te *result.TaskError
		if errors.As(err, &te) && te.Exception != nil {
			return f.chordError(ctx, msg, body, fmt.Sprintf("Dependency %s raised %s", te.TaskID, te.Exception.Error()))
		}
		return f.chordError(ctx, msg, body, fmt.Sprintf("Dependency raised %v", err))
	}
	_, err = canvas.ApplyFromMessage(ctx, f.p, *body, []any{values}, canvas.ApplyOptions{ParentID: msg.ID, RootID: rootOf(msg)})
	if err != nil {
		return f.chordError(ctx, msg, body, fmt.Sprintf("Callback error: %v", err))
	}
	return nil
}

// Replace sends sig in place of the task of msg, as Celery's Task.replace
// does (canvas.Replace).
func (f *celeryFollowups) Replace(ctx context.Context, msg *protocol.Message, sig protocol.Signature) ([]any, error) {
	return canvas.Replace(ctx, f.p, canvas.ReplacedFrom(msg), sig)
}
