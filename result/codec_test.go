package result_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gworker/gworker/internal/testing/testenv"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
)

// Every task meta captured from Celery decodes, and encodes back to the
// same bytes. started_slow has a dict result whose keys are not sorted, so
// a decoded map cannot give its order back; it is checked with a Dict in
// TestEncodeMetaByHand instead.
func TestMetaVectorsRoundTrip(t *testing.T) {
	files, err := filepath.Glob("testdata/*.raw")
	if err != nil {
		t.Fatal(err)
	}
	notMeta := map[string]bool{"chord3_size_key.raw": true, "groupresult_saved.raw": true, "groupresult_nested_saved.raw": true}
	n := 0
	for _, f := range files {
		name := filepath.Base(f)
		if notMeta[name] {
			continue
		}
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			m, err := result.DecodeMeta(raw)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if m.TaskID == "" || m.Status == "" {
				t.Fatalf("decoded %+v", m)
			}
			if m.Status.Ready() != (m.DateDone != nil) {
				t.Errorf("state %s with date_done %v", m.Status, m.DateDone)
			}
			got, err := result.EncodeMeta(m)
			if err != nil {
				t.Fatalf("encode: %v", err)
			}
			if name == "started_slow.raw" {
				if bytes.Equal(got, raw) {
					t.Fatalf("map order unexpectedly kept")
				}
				return
			}
			if !bytes.Equal(got, raw) {
				t.Errorf("re-encoded differs\n got: %s\nwant: %s", got, raw)
			}
		})
		n++
	}
	if n < 20 {
		t.Fatalf("only %d vectors found", n)
	}
}

func mustTime(t *testing.T, s string) *time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return &tm
}

func TestEncodeMetaByHand(t *testing.T) {
	cases := []struct {
		vector string
		meta   *result.Meta
	}{
		{"success_add.raw", &result.Meta{
			TaskID: "00000200-0000-4000-8000-000000000001", Status: result.Success, Result: 4,
			DateDone: mustTime(t, "2026-11-24T03:19:20.987958Z"),
		}},
		{"success_group_member.raw", &result.Meta{
			TaskID: "0000020b-0000-4000-8000-000000000003", Status: result.Success, Result: int64(2),
			DateDone: mustTime(t, "2026-11-24T03:19:50.155484Z"), GroupID: "0000020b-0000-4000-8000-000000000001",
		}},
		{"success_child_with_parent.raw", &result.Meta{
			TaskID: "6c052ae6-05a9-4300-84cb-6754b9704b0e", Status: result.Success, Result: 2,
			DateDone: mustTime(t, "2026-11-24T03:19:46.887093Z"), ParentID: "00000206-0000-4000-8000-000000000001",
		}},
		{"success_extended.raw", &result.Meta{
			TaskID: "00000300-0000-4000-8000-000000000001", Status: result.Success, Result: 4,
			DateDone: mustTime(t, "2026-11-24T03:20:04.606286Z"),
			Extended: true, Name: "tasks.add", Args: []any{2, 2}, Worker: "celery@vm", Queue: "celery",
		}},
		{"started_slow.raw", &result.Meta{
			TaskID: "00000201-0000-4000-8000-000000000001", Status: result.Started,
			Result: protocol.Dict{{Key: "pid", Value: 10659}, {Key: "hostname", Value: "celery@vm"}},
		}},
		{"failure_not_registered.raw", &result.Meta{
			TaskID: "00000204-0000-4000-8000-000000000001", Status: result.Failure,
			Result:   &protocol.Exception{Type: "NotRegistered", Module: "celery.exceptions", Args: []any{"tasks.does_not_exist"}},
			DateDone: mustTime(t, "2026-11-24T03:19:45.296206Z"),
		}},
		{"success_with_link_children.raw", &result.Meta{
			TaskID: "0000020e-0000-4000-8000-000000000001", Status: result.Success, Result: 4,
			Children: []any{result.NewAsyncResult("ab2dc2dc-94ce-4782-af74-f2ea4d775de7", nil)},
			DateDone: mustTime(t, "2026-11-24T03:19:50.729723Z"),
		}},
	}
	for _, c := range cases {
		t.Run(c.vector, func(t *testing.T) {
			got, err := result.EncodeMeta(c.meta)
			if err != nil {
				t.Fatal(err)
			}
			if want := bytes.TrimRight(testenv.ReadTestdata(t, c.vector), "\n"); !bytes.Equal(got, want) {
				t.Errorf("\n got: %s\nwant: %s", got, want)
			}
		})
	}
}

// The deadlock guard's error, stored by a worker, is exactly the
// RuntimeError a Python worker stores.
func TestWouldBlockMatchesCelery(t *testing.T) {
	m, err := result.DecodeMeta(testenv.ReadTestdata(t, "sync_join_in_task.raw"))
	if err != nil {
		t.Fatal(err)
	}
	stored := m.Result.(map[string]any)
	if got := result.ErrWouldBlock.Error(); got != stored["exc_message"].([]any)[0] {
		t.Errorf("text %q, Celery stored %q", got, stored["exc_message"])
	}
	var pe protocol.PythonError
	if !errors.As(result.ErrWouldBlock, &pe) {
		t.Fatal("ErrWouldBlock does not implement protocol.PythonError")
	}
	exc := pe.PythonException()
	got, err := protocol.MarshalJSON(exc.Value())
	if err != nil {
		t.Fatal(err)
	}
	want, err := protocol.MarshalJSON(result.StoredResult(result.Failure, stored))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("exception %s, Celery stored %s", got, want)
	}
}

func TestDateDone(t *testing.T) {
	for in, want := range map[string]string{
		"2026-11-24T03:19:20.987958Z":    `"2026-11-24T03:19:20.987958"`,
		"2026-11-24T03:19:20Z":           `"2026-11-24T03:19:20"`,
		"2026-11-24T03:19:20.000001999Z": `"2026-11-24T03:19:20.000001"`,
		"2026-11-24T05:19:20.5+02:00":    `"2026-11-24T03:19:20.500000"`,
	} {
		b, err := result.EncodeMeta(&result.Meta{TaskID: "x", Status: result.Success, DateDone: mustTime(t, in)})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), `"date_done": `+want) {
			t.Errorf("date_done of %s: %s", in, b)
		}
		m, err := result.DecodeMeta(b)
		if err != nil || m.DateDone == nil || m.DateDone.Location() != time.UTC {
			t.Fatalf("decode %s: %+v %v", b, m, err)
		}
		if w := mustTime(t, in).Truncate(time.Microsecond); !m.DateDone.Equal(w) {
			t.Errorf("decoded %v, want %v", m.DateDone, w)
		}
	}
}

func TestDecodeMetaBadInput(t *testing.T) {
	for _, in := range []string{
		``, `null`, `[]`, `"x"`, `{}`, `{"status": 1}`, `{"status": ""}`,
		`{"status": "SUCCESS", "children": 5}`,
		`{"status": "SUCCESS", "traceback": 5}`,
		`{"status": "SUCCESS", "date_done": "yesterday"}`,
		`{"status": "SUCCESS", "task_id": ["x"]}`,
		`{"status": "SUCCESS"`,
	} {
		_, err := result.DecodeMeta([]byte(in))
		if !errors.Is(err, result.ErrBadMeta) {
			t.Errorf("DecodeMeta(%q): err %v, want ErrBadMeta", in, err)
		}
	}
	m, err := result.DecodeMeta([]byte(`{"status": "PROGRESS", "result": {"done": 1}}`))
	if err != nil || m.Status != "PROGRESS" || m.TaskID != "" {
		t.Errorf("minimal meta: %+v, %v", m, err)
	}
}

func TestEncodeMetaBadInput(t *testing.T) {
	for _, m := range []*result.Meta{nil, {Status: result.Success}, {TaskID: "x"}, {TaskID: "x", Status: result.Success, Result: make(chan int)}} {
		if _, err := result.EncodeMeta(m); !errors.Is(err, result.ErrBadMeta) {
			t.Errorf("EncodeMeta(%+v): err %v, want ErrBadMeta", m, err)
		}
	}
	// An id no key may be built from: from a chain element embedded in a
	// failing task's message, say (a 20 kB id with a newline wrote a
	// 20,031-byte key).
	for _, id := range []string{strings.Repeat("x", 20000) + "\n", "a\nb", "\x00"} {
		_, err := result.EncodeMeta(&result.Meta{TaskID: id, Status: result.Failure})
		if !errors.Is(err, result.ErrBadMeta) || !errors.Is(err, protocol.ErrInvalidID) {
			t.Errorf("EncodeMeta with id %.20q: %v", id, err)
		}
	}
	// A decoded exception dict gets Celery's key order back.
	b, err := result.EncodeMeta(&result.Meta{TaskID: "x", Status: result.Retry, Result: map[string]any{
		"exc_module": "builtins", "exc_message": []any{"a"}, "exc_type": "KeyError", "extra": 1,
	}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `{"exc_type": "KeyError", "exc_message": ["a"], "exc_module": "builtins", "extra": 1}`) {
		t.Errorf("got %s", b)
	}
}
