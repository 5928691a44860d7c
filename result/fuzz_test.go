package result_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
)

// Whatever a backend holds, decoding gives a meta or an error, never a
// panic, and a decoded meta encodes again.
func FuzzDecodeMeta(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.raw")
	for _, name := range files {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"status": "FAILURE", "result": "not an exception", "date_done": "2026-01-01"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := result.DecodeMeta(data)
		if err != nil {
			return
		}
		if m.TaskID == "" {
			m.TaskID = "x"
		}
		if _, err := result.EncodeMeta(m); err != nil {
			t.Fatalf("decoded %q but cannot encode: %v", data, err)
		}
	})
}

// Any decoded value given as a tuple rebuilds a result or fails cleanly,
// and a rebuilt result's tuple rebuilds the same result.
func FuzzFromTuple(f *testing.F) {
	for _, s := range []string{
		`[["a", null], null]`, `["a", null]`, `[["g", null], [[["a", [["p", null], null]], null]]]`,
		`[["g", null], [["x", 1]]]`, `[[1, 2], 3]`, `[]`, `null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := protocol.UnmarshalJSON(data)
		if err != nil {
			return
		}
		r, err := result.FromTuple(v, nil)
		if err != nil {
			return
		}
		again, err := result.FromTuple(r.AsTuple(), nil)
		if err != nil || again.ID() != r.ID() {
			t.Fatalf("tuple %v of %q does not rebuild: %v", r.AsTuple(), data, err)
		}
	})
}
