package worker_test

import (
	"context"
	"reflect"
	"sort"
	"testing"

	"github.com/gworker/gworker/canvas"
	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/worker"
)

// A chord header part that adds tasks to its chord (Celery's
// add_to_chord): the body waits for them and gets their results after the
// header's own; outside a chord, add_to_chord fails with ValueError.
func TestAddToChordGrowsTheChord(t *testing.T) {
	var p *producer.Producer
	e := newEnv(t, func(_ *worker.Config, r *worker.Registry) {
		r.MustRegister("t.grow", func(ctx context.Context, nums []int64) (int64, error) {
			for _, n := range nums {
				if _, err := canvas.AddToChord(ctx, p, canvas.Sig("tasks.add", n, int64(100))); err != nil {
					return 0, err
				}
			}
			return 0, nil
		}, worker.Params("nums"))
	})
	p = e.producer
	e.start()
	ctx := context.Background()
	res, err := canvas.Chord([]*canvas.Signature{canvas.Sig("t.grow", []any{int64(1), int64(2)})}, canvas.Sig("tasks.echo")).ApplyAsync(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	v, err := e.get(res)
	if err != nil {
		t.Fatal(err)
	}
	// The added parts share the adding task's group index: their order
	// among themselves is the backend's (as in Celery).
	got, _ := v.([]any)
	sort.Slice(got, func(i, j int) bool { return got[i].(int64) < got[j].(int64) })
	if want := []any{int64(0), int64(101), int64(102)}; !reflect.DeepEqual(got, want) {
		t.Errorf("chord body got %v, want %v in any order", v, want)
	}
	_, err = e.get(e.send("t.grow", []any{[]any{int64(1)}}, nil))
	wantException(t, err, "ValueError")
}
