package followup_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/gworker/gworker/canvas"
	"github.com/gworker/gworker/gworkertest"
	"github.com/gworker/gworker/worker"
)

// A stamped workflow keeps its stamps through the worker's follow-ups: the
// next chain element, a link callback and a retry each run with the stamps
// Celery 5.5 gives them (request.stamps).
func TestFollowupsKeepStamps(t *testing.T) {
	type seen struct {
		task, id string
		retries  int
		stamps   map[string]any
	}
	ran := make(chan seen, 20)
	reg := worker.NewRegistry()
	record := func(ctx context.Context, args []any, kw map[string]any) (any, error) {
		r, _ := worker.RequestFromContext(ctx)
		ran <- seen{r.Task, r.ID, r.Retries, r.Stamps()}
		if r.Task == "t.retry_once" && r.Retries == 0 {
			return nil, &worker.RetryError{Countdown: time.Millisecond}
		}
		return int64(1), nil
	}
	for _, n := range []string{"t.first", "t.second", "t.cb", "t.retry_once"} {
		if err := reg.Handle(n, record); err != nil {
			t.Fatal(err)
		}
	}
	g := gworkertest.NewEnv(t, gworkertest.Config{Registry: reg, Queue: "gw-stamps"})
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	stamp := map[string]any{"stamped_headers": []any{"wf"}, "wf": "w-1"}
	first := canvas.Sig("t.first").Set(stamp).Link(canvas.Sig("t.cb").Set(stamp))
	ctx := context.Background()
	res, err := canvas.Chain(first, canvas.Sig("t.second").Set(stamp), canvas.Sig("t.retry_once").Set(stamp)).ApplyAsync(ctx, g.Producer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Wait(ctx, res.ID()); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"wf": "w-1"}
	got := map[string]int{}
	for len(got) < 4 || got["t.retry_once"] < 2 {
		var s seen
		select {
		case s = <-ran:
		case <-time.After(20 * time.Second):
			t.Fatalf("ran %v", got)
		}
		got[s.task]++
		if !reflect.DeepEqual(s.stamps, want) {
			t.Errorf("%s[%s] (retries %d) ran with stamps %v, want %v", s.task, s.id, s.retries, s.stamps, want)
		}
	}
}
