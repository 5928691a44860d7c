package testenv

import (
	"testing"

	"github.com/gworker/gworker/protocol"
)

// PyValue decodes JSON with the project's Python-faithful decoder, failing
// the test on an error.
func PyValue(t testing.TB, data []byte) any {
	t.Helper()
	v, err := protocol.UnmarshalJSON(data)
	if err != nil {
		t.Fatalf("decode %s: %v", data, err)
	}
	return v
}

// Normalize turns a value into its decoded JSON form, so that values built
// in Go compare equal to values decoded from a message.
func Normalize(t testing.TB, v any) any {
	t.Helper()
	b, err := protocol.MarshalJSON(v)
	if err != nil {
		t.Fatalf("marshal %#v: %v", v, err)
	}
	return PyValue(t, b)
}
