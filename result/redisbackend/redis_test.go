package redisbackend_test

import (
	"bytes"
	"context"
	"errors"
	"math"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gworker/gworker/internal/testing/testenv"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/result/redisbackend"
)

// Store writes EncodeMeta's bytes with Celery's TTL and publishes them on
// the key name.
func TestStoreWritesAndPublishes(t *testing.T) {
	bd := setup(t, redisbackend.Options{})
	ctx := testCtx(t)
	id := testenv.UUID()
	key := "celery-task-meta-" + id
	bd.cleanup(t, key)

	ps := bd.client.Subscribe(ctx, key)
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil { // subscription confirmed
		t.Fatal(err)
	}
	m := success(id, int64(4))
	if err := bd.b.Store(ctx, m); err != nil {
		t.Fatal(err)
	}
	want, err := result.EncodeMeta(m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := bd.client.Get(ctx, key).Bytes()
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("stored %s (%v), want %s", got, err, want)
	}
	if ttl := bd.client.TTL(ctx, key).Val(); ttl != 24*time.Hour {
		t.Errorf("TTL %v, want 24h (result_expires)", ttl)
	}
	msg, err := ps.ReceiveMessage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Channel != key || msg.Payload != string(want) {
		t.Errorf("published %q on %q", msg.Payload, msg.Channel)
	}
	back, err := bd.b.Get(ctx, id)
	if err != nil || back.Status != result.Success || back.Result != int64(4) || back.TaskID != id {
		t.Errorf("Get: %+v %v", back, err)
	}
}

func TestStoreNoExpiry(t *testing.T) {
	for name, opts := range map[string]redisbackend.Options{
		"flag":     {NoExpiry: true},
		"negative": {Expires: -1},
	} {
		t.Run(name, func(t *testing.T) {
			bd := setup(t, opts)
			ctx := testCtx(t)
			id := testenv.UUID()
			bd.cleanup(t, "celery-task-meta-"+id)
			if err := bd.b.Store(ctx, success(id, "x")); err != nil {
				t.Fatal(err)
			}
			if ttl := bd.client.TTL(ctx, "celery-task-meta-"+id).Val(); ttl != -1 {
				t.Errorf("TTL %v, want none", ttl)
			}
		})
	}
	bd := setup(t, redisbackend.Options{Expires: 90 * time.Second, KeyPrefix: "test-meta-"})
	ctx := testCtx(t)
	id := testenv.UUID()
	bd.cleanup(t, "test-meta-"+id)
	if err := bd.b.Store(ctx, success(id, "x")); err != nil {
		t.Fatal(err)
	}
	if ttl := bd.client.TTL(ctx, "test-meta-"+id).Val(); ttl != 90*time.Second {
		t.Errorf("TTL %v, want 90s", ttl)
	}
}

// A stored SUCCESS is never overwritten, whoever wrote it; other states
// are.
func TestStoreKeepsSuccess(t *testing.T) {
	bd := setup(t, redisbackend.Options{})
	ctx := testCtx(t)
	exc := protocol.NewException("KeyError", "late")

	id := testenv.UUID()
	bd.cleanup(t, "celery-task-meta-"+id)
	started := &result.Meta{TaskID: id, Status: result.Started, Result: protocol.Dict{{Key: "pid", Value: 1}, {Key: "hostname", Value: "go@x"}}}
	for _, m := range []*result.Meta{started, success(id, int64(3)), failure(id, exc), started} {
		if err := bd.b.Store(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if m, _ := bd.b.Get(ctx, id); m.Status != result.Success || m.Result != int64(3) {
		t.Errorf("after late writes: %+v", m)
	}

	// Values written by Python, and values cjson cannot read.
	for name, raw := range map[string][]byte{
		"python": testenv.ReadTestdata(t, "success_add.raw"),
		"nan":    []byte(`{"status": "SUCCESS", "result": NaN, "traceback": null, "children": [], "date_done": null, "task_id": "x"}`),
	} {
		id := testenv.UUID()
		key := "celery-task-meta-" + id
		bd.cleanup(t, key)
		if err := bd.client.Set(ctx, key, raw, time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
		if err := bd.b.Store(ctx, failure(id, exc)); err != nil {
			t.Fatal(err)
		}
		if got := bd.client.Get(ctx, key).Val(); got != string(raw) {
			t.Errorf("%s: SUCCESS overwritten by %s", name, got)
		}
	}

	// A FAILURE can be replaced (a retried task that then succeeds).
	id = testenv.UUID()
	bd.cleanup(t, "celery-task-meta-"+id)
	for _, m := range []*result.Meta{failure(id, exc), success(id, 1.5)} {
		if err := bd.b.Store(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if m, _ := bd.b.Get(ctx, id); m.Status != result.Success || m.Result != 1.5 {
		t.Errorf("failure not replaced: %+v", m)
	}
}

func TestStoreMany(t *testing.T) {
	bd := setup(t, redisbackend.Options{})
	ctx := testCtx(t)
	var metas []*result.Meta
	for i := range 50 {
		id := testenv.UUID()
		bd.cleanup(t, "celery-task-meta-"+id)
		metas = append(metas, success(id, int64(i)))
	}
	// The script may not be loaded yet: flush it from the cache first
	// would affect other users of the server, so just store twice.
	if err := bd.b.StoreMany(ctx, metas); err != nil {
		t.Fatal(err)
	}
	if err := bd.b.StoreMany(ctx, []*result.Meta{failure(metas[0].TaskID, protocol.NewException("KeyError"))}); err != nil {
		t.Fatal(err)
	}
	for i, m := range metas {
		got, err := bd.b.Get(ctx, m.TaskID)
		if err != nil || got.Status != result.Success || got.Result != int64(i) {
			t.Fatalf("%d: %+v %v", i, got, err)
		}
	}
	if err := bd.b.StoreMany(ctx, []*result.Meta{{TaskID: "", Status: result.Success}}); !errors.Is(err, result.ErrBadMeta) {
		t.Errorf("bad meta: %v", err)
	}
	if err := bd.b.StoreMany(ctx, nil); err != nil {
		t.Error(err)
	}
}

func TestGetForget(t *testing.T) {
	bd := setup(t, redisbackend.Options{})
	ctx := testCtx(t)
	id := testenv.UUID()
	key := "celery-task-meta-" + id
	bd.cleanup(t, key)
	m, err := bd.b.Get(ctx, id)
	if err != nil || m.Status != result.Pending || m.TaskID != id || m.Result != nil {
		t.Fatalf("absent: %+v %v", m, err)
	}
	for _, bad := range []string{"not json", `[1, 2]`, `{"result": 1}`, `{"status": "SUCCESS", "children": 3}`} {
		bd.client.Set(ctx, key, bad, time.Minute)
		if _, err := bd.b.Get(ctx, id); !errors.Is(err, result.ErrBadMeta) {
			t.Errorf("Get of %q: %v", bad, err)
		}
	}
	bd.client.Set(ctx, key, testenv.ReadTestdata(t, "failure_valueerror.raw"), time.Minute)
	m, err = bd.b.Get(ctx, id)
	if err != nil || m.Status != result.Failure || m.Traceback == "" {
		t.Fatalf("python failure: %+v %v", m, err)
	}
	if err := bd.b.Forget(ctx, id); err != nil {
		t.Fatal(err)
	}
	if n := bd.client.Exists(ctx, key).Val(); n != 0 {
		t.Error("Forget left the key")
	}
}

func TestOpen(t *testing.T) {
	ctx := testCtx(t)
	b, err := redisbackend.Open(testenv.RedisURL(), redisbackend.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() }) // after the Forget below
	id := testenv.UUID()
	t.Cleanup(func() { _ = b.Forget(context.Background(), id) })
	if err := b.Store(ctx, success(id, "ok")); err != nil {
		t.Fatalf("store through Open: %v", err)
	}
	for _, u := range []string{"http://x", "redis://host:port/x", "redis://127.0.0.1:6379/notadb"} {
		if _, err := redisbackend.Open(u, redisbackend.Options{}); err == nil {
			t.Errorf("Open(%q) accepted", u)
		}
	}
	if tb, err := redisbackend.Open("rediss://:secret@127.0.0.1:6380/2", redisbackend.Options{}); err != nil {
		t.Errorf("rediss: %v", err)
	} else {
		tb.Close()
	}
}

func TestGroups(t *testing.T) {
	bd := setup(t, redisbackend.Options{})
	ctx := testCtx(t)

	// Saving the captured group gives Celery's bytes.
	raw := testenv.ReadTestdata(t, "groupresult_saved.raw")
	saved, err := protocol.UnmarshalJSON(raw)
	if err != nil {
		t.Fatal(err)
	}
	tuple := saved.(map[string]any)["result"]
	gid := testenv.UUID()
	key := "celery-taskset-meta-" + gid
	bd.cleanup(t, key)
	if err := bd.b.SaveGroup(ctx, gid, tuple); err != nil {
		t.Fatal(err)
	}
	if got := bd.client.Get(ctx, key).Val(); got != string(raw) {
		t.Errorf("saved %s\nwant %s", got, raw)
	}
	if ttl := bd.client.TTL(ctx, key).Val(); ttl != 24*time.Hour {
		t.Errorf("TTL %v", ttl)
	}

	// Restore the nested group Python saved.
	raw = testenv.ReadTestdata(t, "groupresult_nested_saved.raw")
	bd.client.Set(ctx, key, raw, time.Minute)
	g, err := result.RestoreGroup(ctx, bd.b, gid)
	if err != nil {
		t.Fatal(err)
	}
	if g.ID() != "0000020c-0000-4000-8000-000000000006" || g.Len() != 2 {
		t.Fatalf("restored %s with %d", g.ID(), g.Len())
	}
	if p := g.Children()[0].(*result.AsyncResult).Parent(); p == nil || p.ID() != "0000020c-0000-4000-8000-000000000002" {
		t.Errorf("first child's parent %v", p)
	}
	if n, ok := g.Children()[1].(*result.GroupResult); !ok || n.Len() != 2 {
		t.Errorf("nested group %v", g.Children()[1])
	}
	if err := g.ResultSet.Forget(ctx); err != nil {
		t.Fatal(err)
	}

	for _, bad := range []string{"nope", `[]`, `{"x": 1}`, `{"result": null}`, `{"result": [1, 2]}`} {
		bd.client.Set(ctx, key, bad, time.Minute)
		if _, err := result.RestoreGroup(ctx, bd.b, gid); !errors.Is(err, result.ErrBadTuple) {
			t.Errorf("restore of %q: %v", bad, err)
		}
	}
	if err := bd.b.DeleteGroup(ctx, gid); err != nil {
		t.Fatal(err)
	}
	if _, err := bd.b.RestoreGroup(ctx, gid); !errors.Is(err, result.ErrGroupNotFound) {
		t.Errorf("after delete: %v", err)
	}
}

func intp(i int) *int { return &i }

func TestChord(t *testing.T) {
	bd := setup(t, redisbackend.Options{})
	ctx := testCtx(t)
	gid := testenv.UUID()
	base := "celery-taskset-meta-" + gid
	bd.cleanup(t, base+".j", base+".t", base+".s")

	ps := bd.client.Subscribe(ctx, base+".s")
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	if err := bd.b.SetChordSize(ctx, gid, 3); err != nil {
		t.Fatal(err)
	}
	if got := bd.client.Get(ctx, base+".s").Val(); got != string(testenv.ReadTestdata(t, "chord3_size_key.raw")) {
		t.Errorf(".s = %q", got)
	}
	if ttl := bd.client.TTL(ctx, base+".s").Val(); ttl != 24*time.Hour {
		t.Errorf(".s TTL %v", ttl)
	}
	if msg, err := ps.ReceiveMessage(ctx); err != nil || msg.Payload != "3" {
		t.Errorf("published %v %v", msg, err)
	}

	ids := []string{testenv.UUID(), testenv.UUID(), testenv.UUID()}
	parts := []result.ChordPart{
		{TaskID: ids[0], Status: result.Success, Result: int64(2)},
		{TaskID: ids[1], Status: result.Success, Result: int64(4)},
		{TaskID: ids[2], Status: result.Failure, Result: protocol.NewException("ValueError", "in-header", 42)},
	}
	// Parts finish out of order; the result comes back in header order.
	for _, i := range []int{1, 0} {
		done, got, err := bd.b.AddChordPart(ctx, gid, intp(i), parts[i])
		if err != nil || done || got != nil {
			t.Fatalf("part %d: %v %v %v", i, done, got, err)
		}
	}
	members := bd.client.ZRangeWithScores(ctx, base+".j", 0, -1).Val()
	want := []string{
		`[1, "` + ids[0] + `", "SUCCESS", 2]`,
		`[1, "` + ids[1] + `", "SUCCESS", 4]`,
	}
	if len(members) != 2 || members[0].Member != want[0] || members[1].Member != want[1] || members[0].Score != 0 || members[1].Score != 1 {
		t.Errorf(".j = %v, want %v", members, want)
	}
	for _, k := range []string{".j", ".s"} {
		if ttl := bd.client.TTL(ctx, base+k).Val(); ttl != 24*time.Hour {
			t.Errorf("%s TTL %v", k, ttl)
		}
	}
	done, got, err := bd.b.AddChordPart(ctx, gid, intp(2), parts[2])
	if err != nil || !done {
		t.Fatalf("last part: %v %v", done, err)
	}
	if len(got) != 3 || got[0].TaskID != ids[0] || got[1].Result != int64(4) || got[2].Status != result.Failure {
		t.Fatalf("parts %+v", got)
	}
	exc, ok := got[2].Result.(map[string]any)
	if !ok || exc["exc_type"] != "ValueError" || !reflect.DeepEqual(exc["exc_message"], []any{"in-header", int64(42)}) {
		t.Errorf("failed part %#v", got[2].Result)
	}
	if n := bd.client.Exists(ctx, base+".j", base+".t", base+".s").Val(); n != 0 {
		t.Errorf("%d chord keys left after completion", n)
	}
}

func TestChordWithoutSizeAndExtra(t *testing.T) {
	bd := setup(t, redisbackend.Options{})
	ctx := testCtx(t)
	gid := testenv.UUID()
	base := "celery-taskset-meta-" + gid
	bd.cleanup(t, base+".j", base+".t", base+".s")
	// Without .s nothing completes.
	for range 3 {
		done, _, err := bd.b.AddChordPart(ctx, gid, nil, result.ChordPart{TaskID: testenv.UUID(), Status: result.Success, Result: nil})
		if err != nil || done {
			t.Fatalf("without size: %v %v", done, err)
		}
	}
	if s := bd.client.ZRangeWithScores(ctx, base+".j", 0, 0).Val(); len(s) != 1 || !math.IsInf(s[0].Score, 1) {
		t.Errorf("score without group index: %v", s)
	}
	// .t adds parts (Task.add_to_chord): 3 recorded, size 2 + 2 extra.
	bd.client.Set(ctx, base+".s", "2", time.Minute)
	bd.client.Set(ctx, base+".t", "2", time.Minute)
	done, parts, err := bd.b.AddChordPart(ctx, gid, nil, result.ChordPart{TaskID: testenv.UUID(), Status: result.Success, Result: "x"})
	if err != nil || !done || len(parts) != 4 {
		t.Fatalf("with .t: %v %d %v", done, len(parts), err)
	}
	bd.client.Set(ctx, base+".s", "bad", time.Minute)
	if _, _, err := bd.b.AddChordPart(ctx, gid, nil, result.ChordPart{TaskID: testenv.UUID(), Status: result.Success}); err == nil {
		t.Error("bad size accepted")
	}
	if err := bd.b.SetChordSize(ctx, gid, -1); err == nil {
		t.Error("negative size accepted")
	}
}

func TestWaitReady(t *testing.T) {
	bd := setup(t, redisbackend.Options{})
	ctx := testCtx(t)
	const n = 1000
	ids := make([]string, n)
	var early []*result.Meta
	for i := range ids {
		ids[i] = testenv.UUID()
		bd.cleanup(t, "celery-task-meta-"+ids[i])
		if i%10 == 0 { // some are ready before the wait starts
			early = append(early, success(ids[i], int64(i)))
		}
	}
	// A not-ready state stored before, and one published during the wait.
	if err := bd.b.Store(ctx, &result.Meta{TaskID: ids[1], Status: result.Started}); err != nil {
		t.Fatal(err)
	}
	if err := bd.b.StoreMany(ctx, early); err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		var late []*result.Meta
		for i, id := range ids {
			if i%10 != 0 {
				late = append(late, success(id, int64(i)))
			}
		}
		_ = bd.b.Store(ctx, &result.Meta{TaskID: ids[2], Status: result.Retry})
		_ = bd.b.StoreMany(ctx, late)
	}()
	var (
		mu   sync.Mutex
		seen = map[string]int{}
	)
	dup := append(append([]string{}, ids...), ids[5], ids[0])
	err := bd.b.WaitReady(ctx, dup, func(m *result.Meta) {
		mu.Lock()
		defer mu.Unlock()
		seen[m.TaskID]++
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != n {
		t.Fatalf("%d ids reported, want %d", len(seen), n)
	}
	for id, c := range seen {
		if c != 1 {
			t.Errorf("%s reported %d times", id, c)
		}
	}
	if err := bd.b.WaitReady(ctx, nil, func(*result.Meta) { t.Error("called") }); err != nil {
		t.Error(err)
	}
}

func TestWaitReadyEnds(t *testing.T) {
	bd := setup(t, redisbackend.Options{})
	id := testenv.UUID()
	key := "celery-task-meta-" + id
	bd.cleanup(t, key)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := bd.b.WaitReady(ctx, []string{id}, func(*result.Meta) { t.Error("called") })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err %v", err)
	}
	// A value that is not a meta ends the wait with an error.
	bd.client.Set(context.Background(), key, "garbage", time.Minute)
	err = bd.b.WaitReady(testCtx(t), []string{id}, func(*result.Meta) { t.Error("called") })
	if !errors.Is(err, result.ErrBadMeta) {
		t.Errorf("garbage: %v", err)
	}
}

// BenchmarkJoinNative1000 reports how long JoinNative on a 1,000-member
// group takes to return after the last result is stored (ms-after-last).
func BenchmarkJoinNative1000(b *testing.B) {
	bd := setup(b, redisbackend.Options{})
	ctx := context.Background()
	var total time.Duration
	for b.Loop() {
		b.StopTimer()
		members := make([]result.Result, 1000)
		metas := make([]*result.Meta, 1000)
		for i := range members {
			id := testenv.UUID()
			members[i] = result.NewAsyncResult(id, bd.b)
			metas[i] = success(id, int64(i))
		}
		rs := result.NewResultSet(members...)
		type out struct {
			at  time.Time
			err error
		}
		done := make(chan out, 1)
		b.StartTimer()
		go func() {
			_, err := rs.JoinNative(ctx)
			done <- out{time.Now(), err}
		}()
		// Let the join subscribe; the wait starts whenever it is ready.
		for bd.client.PubSubNumSub(ctx, "celery-task-meta-"+metas[999].TaskID).Val()["celery-task-meta-"+metas[999].TaskID] == 0 {
			time.Sleep(time.Millisecond)
		}
		if err := bd.b.StoreMany(ctx, metas[:999]); err != nil {
			b.Fatal(err)
		}
		if err := bd.b.Store(ctx, metas[999]); err != nil {
			b.Fatal(err)
		}
		last := time.Now()
		o := <-done
		if o.err != nil {
			b.Fatal(o.err)
		}
		total += o.at.Sub(last)
		b.StopTimer()
		_ = rs.Forget(ctx)
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms-after-last")
}

// A result backend URL that does not parse must not put its password in
// the error (go-redis and net/url quote the URL).
func TestOpenErrorHidesPassword(t *testing.T) {
	const pw = "s3cretPW"
	for _, raw := range []string{
		"redis://:" + pw + "@[::1",
		"redis://u:" + pw + "@h/%zz",
		"redis://:" + pw + "@h:6379/notadb",
		"redis://h:6379/0?password=" + pw + "&db=zz",
	} {
		_, err := redisbackend.Open(raw, redisbackend.Options{})
		if err == nil {
			t.Fatalf("%q: no error", raw)
		}
		if strings.Contains(err.Error(), pw) {
			t.Errorf("%q: the error leaks the password: %v", raw, err)
		}
	}
}

// AddToChord counts one more part in <gid>.t, as Celery's add_to_chord:
// a chord of size 1 grown twice completes at its third part.
func TestAddToChord(t *testing.T) {
	bd := setup(t, redisbackend.Options{})
	ctx := testCtx(t)
	gid := testenv.UUID()
	base := "celery-taskset-meta-" + gid
	bd.cleanup(t, base+".j", base+".t", base+".s")
	if err := bd.b.SetChordSize(ctx, gid, 1); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := bd.b.AddToChord(ctx, gid); err != nil {
			t.Fatal(err)
		}
	}
	if v := bd.client.Get(ctx, base+".t").Val(); v != "2" {
		t.Errorf(".t = %q, want 2", v)
	}
	for i := range 3 {
		done, parts, err := bd.b.AddChordPart(ctx, gid, nil, result.ChordPart{TaskID: testenv.UUID(), Status: result.Success, Result: int64(i)})
		if err != nil || done != (i == 2) || (done && len(parts) != 3) {
			t.Fatalf("part %d: done %v, %d parts, %v", i, done, len(parts), err)
		}
	}
	if err := bd.b.AddToChord(ctx, ""); err == nil {
		t.Error("empty group id accepted")
	}
}
