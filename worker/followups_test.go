package worker

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
)

// countingFollowups counts the calls and fails them with err.
type countingFollowups struct {
	success, failure, chord, retry, republish int
	err                                       error
}

func (f *countingFollowups) AfterSuccess(context.Context, *protocol.Message, any) ([]any, error) {
	f.success++
	return []any{"child"}, f.err
}
func (f *countingFollowups) AfterFailure(context.Context, *protocol.Message, *protocol.Exception, string) error {
	f.failure++
	return f.err
}
func (f *countingFollowups) ChordPart(context.Context, *protocol.Message, result.State, any) error {
	f.chord++
	return f.err
}
func (f *countingFollowups) Retry(context.Context, *protocol.Message, time.Time, []any, map[string]any) error {
	f.retry++
	return f.err
}
func (f *countingFollowups) Republish(context.Context, *protocol.Message, *protocol.RawMessage) error {
	f.republish++
	return f.err
}

func TestFollowupSenderSendsOnlyWhatTheMessageAsks(t *testing.T) {
	f := &countingFollowups{}
	log, logs := observed()
	s := &followupSender{f: f, log: log}
	ctx := context.Background()
	plain := &protocol.Message{ID: "plain"}
	s.afterSuccess(ctx, plain, nil)
	s.afterFailure(ctx, plain, protocol.NewException("E"), "")
	s.chordPart(ctx, plain, result.Success, nil)
	if f.success+f.failure+f.chord != 0 {
		t.Fatalf("follow-ups sent for a message without any: %+v", f)
	}

	linked := &protocol.Message{ID: "linked", Callbacks: []protocol.Signature{{}}, Errbacks: []protocol.Signature{{}}, Chord: &protocol.Signature{}}
	if children := s.afterSuccess(ctx, linked, nil); len(children) != 1 {
		t.Errorf("children %v", children)
	}
	s.afterFailure(ctx, linked, protocol.NewException("E"), "")
	s.chordPart(ctx, linked, result.Success, nil)
	if f.success != 1 || f.failure != 1 || f.chord != 1 {
		t.Fatalf("calls %+v", f)
	}

	f.err = errors.New("broker down")
	s.afterSuccess(ctx, linked, nil)
	s.afterFailure(ctx, linked, protocol.NewException("E"), "")
	s.chordPart(ctx, linked, result.Failure, nil)
	if n := logs.FilterField(zap.String("id", "linked")).Len(); n != 3 {
		t.Errorf("%d failed follow-ups logged, want 3", n)
	}

	none := &followupSender{log: log}
	if children := none.afterSuccess(ctx, linked, nil); children != nil {
		t.Errorf("children without Followups: %v", children)
	}
}
