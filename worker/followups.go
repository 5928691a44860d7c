package worker

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
)

// Followups sends the messages that follow a task, as a Celery worker does
// after running one: link callbacks and the next chain element on success,
// errbacks and the chain's propagated failure on failure, the chord body
// when the last header part completes, retries and republished far ETAs.
//
// It is the seam through which the worker reaches the broker without
// importing a broker client, the producer or canvas. NewFollowups in
// package followup is the implementation; the interface is unstable:
// methods may be added in any release, so implement it outside gworker
// only in tests.
type Followups interface {
	// AfterSuccess applies callbacks and the next chain element with the
	// task's return value and returns the result tuples of what it sent
	// (the task's children).
	AfterSuccess(ctx context.Context, msg *protocol.Message, value any) ([]any, error)
	// AfterFailure stores the failure under every later chain element's id
	// and applies errbacks.
	AfterFailure(ctx context.Context, msg *protocol.Message, exc *protocol.Exception, traceback string) error
	// ChordPart records a finished chord header part (msg.Chord is set) and,
	// when the chord is complete, sends its body or fails it.
	ChordPart(ctx context.Context, msg *protocol.Message, state result.State, value any) error
	// Retry publishes the task again: same id, retries+1, the given eta,
	// new arguments when not nil.
	Retry(ctx context.Context, msg *protocol.Message, eta time.Time, args []any, kwargs map[string]any) error
	// Republish publishes a delivered message again unchanged, to the queue
	// it came from.
	Republish(ctx context.Context, msg *protocol.Message, raw *protocol.RawMessage) error
}

// followupSender applies what follows a task through Followups, when the
// message asks for it, and logs what fails: a follow-up that cannot be
// sent does not change the task's own outcome.
type followupSender struct {
	f   Followups // nil: nothing is sent
	log *zap.Logger
	// errbacks lets Followups call new-style errbacks inline
	// (CallInlineErrbacks); nil: none are.
	errbacks *inlineErrbacks
}

// afterSuccess applies callbacks and the next chain element and returns
// the children they make.
func (s *followupSender) afterSuccess(ctx context.Context, msg *protocol.Message, value any) []any {
	if s.f == nil || (len(msg.Callbacks) == 0 && len(msg.Chain) == 0) {
		return nil
	}
	children, err := s.f.AfterSuccess(ctx, msg, value)
	if err != nil {
		s.log.Error("applying callbacks failed", zap.String("id", msg.ID), zap.Error(err))
	}
	return children
}

// afterFailure applies errbacks and fails the rest of the chain.
func (s *followupSender) afterFailure(ctx context.Context, msg *protocol.Message, exc *protocol.Exception, tb string) {
	if s.f == nil || (len(msg.Errbacks) == 0 && len(msg.Chain) == 0) {
		return
	}
	if err := s.f.AfterFailure(withInlineErrbacks(ctx, s.errbacks), msg, exc, tb); err != nil {
		s.log.Error("applying errbacks failed", zap.String("id", msg.ID), zap.Error(err))
	}
}

// chordPart counts a finished chord header part.
func (s *followupSender) chordPart(ctx context.Context, msg *protocol.Message, st result.State, value any) {
	if s.f == nil || msg.Chord == nil {
		return
	}
	if err := s.f.ChordPart(withInlineErrbacks(ctx, s.errbacks), msg, st, value); err != nil {
		s.log.Error("chord bookkeeping failed", zap.String("id", msg.ID), zap.String("group", msg.GroupID), zap.Error(err))
	}
}
