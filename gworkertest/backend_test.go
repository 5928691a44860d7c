package gworkertest_test

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/gworker/gworker/gworkertest"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
)

func TestBackendStoresWhatRedisWould(t *testing.T) {
	ctx := context.Background()
	b := gworkertest.NewBackend()
	type area struct {
		Area float64 `json:"area"`
		Unit string  `json:"unit"`
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	m := &result.Meta{TaskID: "t1", Status: result.Success, Result: []any{3, 2.5, area{6, "cm2"}}, DateDone: &now}
	if err := b.Store(ctx, m); err != nil {
		t.Fatal(err)
	}
	want, _ := result.EncodeMeta(m)
	if got, ok := b.Raw("t1"); !ok || !bytes.Equal(got, want) {
		t.Errorf("stored %s, want %s", got, want)
	}
	got, err := b.Get(ctx, "t1")
	if err != nil {
		t.Fatal(err)
	}
	l := got.Result.([]any)
	if l[0] != int64(3) || l[1] != 2.5 {
		t.Errorf("numbers come back as %T %T", l[0], l[1])
	}
	if s, ok := l[2].(map[string]any); !ok || s["unit"] != "cm2" {
		t.Errorf("a struct comes back as %#v", l[2])
	}
	// A stored SUCCESS stays.
	if err := b.Store(ctx, &result.Meta{TaskID: "t1", Status: result.Failure, Result: protocol.NewException("KeyError", "x")}); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.Get(ctx, "t1"); got.Status != result.Success {
		t.Errorf("SUCCESS overwritten by %s", got.Status)
	}
	if got, _ := b.Get(ctx, "unknown"); got.Status != result.Pending || got.TaskID != "unknown" {
		t.Errorf("unknown task: %+v", got)
	}
	if err := b.Forget(ctx, "t1"); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.Get(ctx, "t1"); got.Status != result.Pending {
		t.Errorf("after Forget: %s", got.Status)
	}
	var ee *protocol.EncodeError
	if err := b.Store(ctx, &result.Meta{TaskID: "t2", Status: result.Success, Result: make(chan int)}); !errors.As(err, &ee) {
		t.Errorf("unencodable result: %v", err)
	}
	if ids := b.TaskIDs(); len(ids) != 0 {
		t.Errorf("ids: %v", ids)
	}
	for want := int64(1); want <= 2; want++ {
		if n, err := b.CountRedelivery(ctx, "t1.0"); err != nil || n != want {
			t.Errorf("redelivery count: %d %v, want %d", n, err, want)
		}
	}
}

func TestBackendGroups(t *testing.T) {
	ctx := context.Background()
	b := gworkertest.NewBackend()
	g := result.NewGroupResult("g1", b, result.NewAsyncResult("a", b), result.NewAsyncResult("b", b))
	if err := g.Save(ctx); err != nil {
		t.Fatal(err)
	}
	back, err := result.RestoreGroup(ctx, b, "g1")
	if err != nil {
		t.Fatal(err)
	}
	if back.ID() != "g1" || len(back.Results()) != 2 || back.Results()[1].ID() != "b" {
		t.Errorf("restored %+v", back)
	}
	if err := g.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := result.RestoreGroup(ctx, b, "g1"); !errors.Is(err, result.ErrGroupNotFound) {
		t.Errorf("after delete: %v", err)
	}
}

func TestBackendChords(t *testing.T) {
	ctx := context.Background()
	b := gworkertest.NewBackend()
	idx := func(i int) *int { return &i }
	// Without a size the chord never completes.
	if done, _, err := b.AddChordPart(ctx, "nosize", idx(0), result.ChordPart{TaskID: "x", Status: result.Success, Result: int64(1)}); done || err != nil {
		t.Fatalf("chord without size: %v %v", done, err)
	}
	if err := b.SetChordSize(ctx, "c", 3); err != nil {
		t.Fatal(err)
	}
	parts := []struct {
		i    int
		part result.ChordPart
	}{
		{2, result.ChordPart{TaskID: "p2", Status: result.Success, Result: 3}},
		{0, result.ChordPart{TaskID: "p0", Status: result.Failure, Result: protocol.NewException("KeyError", "k")}},
		{1, result.ChordPart{TaskID: "p1", Status: result.Success, Result: 2.0}},
	}
	for n, p := range parts {
		done, got, err := b.AddChordPart(ctx, "c", idx(p.i), p.part)
		if err != nil {
			t.Fatal(err)
		}
		if done != (n == 2) {
			t.Fatalf("part %d: complete=%v", n, done)
		}
		if !done {
			continue
		}
		if len(got) != 3 || got[0].TaskID != "p0" || got[1].Result != 2.0 || got[2].Result != int64(3) {
			t.Errorf("parts: %+v", got)
		}
		if exc, err := protocol.ExceptionFromValue(got[0].Result); err != nil || exc.Type != "KeyError" {
			t.Errorf("failed part: %v %v", got[0].Result, err)
		}
	}
	if err := b.SetChordSize(ctx, "c", -1); err == nil {
		t.Error("negative size accepted")
	}
}

func TestWaitReady(t *testing.T) {
	ctx := context.Background()
	b := gworkertest.NewBackend()
	_ = b.Store(ctx, &result.Meta{TaskID: "done", Status: result.Success, Result: int64(1)})
	_ = b.Store(ctx, &result.Meta{TaskID: "later", Status: result.Started})
	var mu sync.Mutex
	got := map[string]any{}
	errc := make(chan error, 1)
	go func() {
		errc <- b.WaitReady(ctx, []string{"done", "later", "done", "other"}, func(m *result.Meta) {
			mu.Lock()
			defer mu.Unlock()
			if _, dup := got[m.TaskID]; dup {
				t.Errorf("%s reported twice", m.TaskID)
			}
			got[m.TaskID] = m.Result
		})
	}()
	_ = b.Store(ctx, &result.Meta{TaskID: "later", Status: result.Success, Result: "x"})
	_ = b.Store(ctx, &result.Meta{TaskID: "other", Status: result.Failure, Result: protocol.NewException("ValueError", "v")})
	select {
	case err := <-errc:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("WaitReady did not return")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 3 || got["done"] != int64(1) || got["later"] != "x" {
		t.Errorf("reported %v", got)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := b.WaitReady(cctx, []string{"never"}, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled wait: %v", err)
	}
}

func TestBackendOutage(t *testing.T) {
	ctx := context.Background()
	b := gworkertest.NewBackend()
	_ = b.Store(ctx, &result.Meta{TaskID: "kept", Status: result.Success, Result: int64(1)})
	b.SetOutage(true)
	if err := b.Store(ctx, &result.Meta{TaskID: "new", Status: result.Success}); !errors.Is(err, gworkertest.ErrUnavailable) {
		t.Errorf("store during an outage: %v", err)
	}
	if _, err := b.Get(ctx, "kept"); !errors.Is(err, gworkertest.ErrUnavailable) {
		t.Errorf("get during an outage: %v", err)
	}
	if _, _, err := b.AddChordPart(ctx, "g", nil, result.ChordPart{TaskID: "x", Status: result.Success}); !errors.Is(err, gworkertest.ErrUnavailable) {
		t.Errorf("chord part during an outage: %v", err)
	}
	if err := b.WaitReady(ctx, []string{"kept"}, nil); !errors.Is(err, gworkertest.ErrUnavailable) {
		t.Errorf("wait during an outage: %v", err)
	}
	b.SetOutage(false)
	if m, err := b.Get(ctx, "kept"); err != nil || m.Result != int64(1) {
		t.Errorf("after the outage: %+v %v", m, err)
	}
	if m, _ := b.Get(ctx, "new"); m.Status != result.Pending {
		t.Errorf("a store that failed was kept: %+v", m)
	}
}
