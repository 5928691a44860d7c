package result_test

import (
	"testing"
	"time"

	"github.com/gworker/gworker/result"
)

// BenchmarkEncodeMeta is the encoding of the SUCCESS meta of tasks.add, the
// value a worker writes to the backend for every task.
func BenchmarkEncodeMeta(b *testing.B) {
	now := time.Now().UTC()
	m := &result.Meta{TaskID: "d2c5ba2c-2a1e-4e0c-9b6e-2f6a3c0d9b11", Status: result.Success, Result: int64(4), DateDone: &now}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := result.EncodeMeta(m); err != nil {
			b.Fatal(err)
		}
	}
}
