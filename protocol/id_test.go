package protocol

import (
	"errors"
	"strings"
	"testing"
)

// A message refused for its id must not name that id in DecodeError.ID:
// a worker writes FAILURE under DecodeError.ID, and an invalid id must
// never become a result key. A group id is checked like a task id.
func TestInvalidIDsAreNotReported(t *testing.T) {
	long := strings.Repeat("a", MaxTaskIDLen+1)
	for _, tc := range []struct {
		name   string
		mutate func(r *RawMessage)
		reason string
	}{
		{"id newline", func(r *RawMessage) { r.Headers["id"] = "a\nb" }, "bad-id"},
		{"id NUL", func(r *RawMessage) { r.Headers["id"] = "a\x00b" }, "bad-id"},
		{"id 256 bytes", func(r *RawMessage) { r.Headers["id"] = long }, "bad-id"},
		{"id 20 kB", func(r *RawMessage) { r.Headers["id"] = strings.Repeat("x", 20000) }, "bad-id"},
		{"id not UTF-8", func(r *RawMessage) { r.Headers["id"] = []byte("a\xffb") }, "bad-id"},
		{"id newline, bad body", func(r *RawMessage) { r.Headers["id"] = "a\nb"; r.Body = []byte("{not json") }, "bad-json"},
		{"id too long, disallowed", func(r *RawMessage) { r.Headers["id"] = long; r.ContentType = ContentTypePickle }, "content-disallowed"},
		{"v1 id newline", func(r *RawMessage) {
			r.Headers = map[string]any{}
			r.Body = []byte(`{"task": "tasks.add", "id": "a\nb", "args": "x"}`)
		}, "args-not-list"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := baseRaw(t)
			tc.mutate(raw)
			_, err := Decode(raw, DecodeOptions{})
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("err = %v, want a *DecodeError", err)
			}
			if de.Reason != tc.reason {
				t.Errorf("reason %q, want %q (%v)", de.Reason, tc.reason, err)
			}
			if de.ID != "" {
				t.Errorf("DecodeError.ID = %.40q for an invalid id", de.ID)
			}
		})
	}
	for _, group := range []string{"g\nx", "g\x00", long, ""} {
		raw := baseRaw(t)
		raw.Headers["group"] = group
		m, err := Decode(raw, DecodeOptions{})
		if group == "" {
			if err != nil || m.GroupID != "" {
				t.Errorf("empty group: %v %+v", err, m)
			}
			continue
		}
		var de *DecodeError
		if !errors.As(err, &de) || de.Reason != "bad-group" {
			t.Errorf("group %.40q: err = %v, want reason bad-group", group, err)
			continue
		}
		if de.ID == "" {
			t.Errorf("group %.40q: the valid task id was not reported", group)
		}
	}
}

func TestCheckID(t *testing.T) {
	for _, ok := range []string{"d3b07384-d9a0-4c9e-8f3b-1a2b3c4d5e6f", "x", strings.Repeat("é", 127), "a b"} {
		if err := CheckID(ok); err != nil {
			t.Errorf("CheckID(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a\nb", "a\x00", "a\rb", "a\tb", "\u2028", strings.Repeat("a", 256), "\xff"} {
		if err := CheckID(bad); !errors.Is(err, ErrInvalidID) {
			t.Errorf("CheckID(%.40q) = %v, want ErrInvalidID", bad, err)
		}
	}
}
