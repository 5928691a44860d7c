package result_test

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/gworker/gworker/internal/testing/testenv"
	"github.com/gworker/gworker/result"
)

// A stamped task's extended meta as a Celery 5.5.3 worker stored it
// (result_extended): stamped_headers after queue, then each stamp by name.
// It decodes with its stamps and encodes back to the same bytes but for
// date_done, which gworker writes as Celery 5.2.6 does (no offset).
func TestMetaStampsAsCelery55(t *testing.T) {
	raw := bytes.TrimRight(testenv.ReadTestdata(t, "success_extended_stamped.celery55"), "\n")
	m, err := result.DecodeMeta(raw)
	if err != nil {
		t.Fatal(err)
	}
	if !m.Extended || !reflect.DeepEqual(m.StampedHeaders, []string{"zz", "aa"}) ||
		!reflect.DeepEqual(m.Stamps, map[string]any{"zz": []any{"x", int64(1)}, "aa": "y"}) {
		t.Fatalf("decoded %+v", m)
	}
	got, err := result.EncodeMeta(m)
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Replace(raw, []byte(`.583945+00:00"`), []byte(`.583945"`), 1)
	if !bytes.Equal(got, want) {
		t.Errorf("\n got: %s\nwant: %s", got, want)
	}
	// A stamp named as a member of the meta is not written twice.
	m.StampedHeaders = append(m.StampedHeaders, "status", "zz")
	got, err = result.EncodeMeta(m)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Count(got, []byte(`"status"`)) != 2 || bytes.Count(got, []byte(`"zz": `)) != 1 {
		t.Errorf("encoded %s", got)
	}
	// Without result_extended, no stamps.
	m.Extended = false
	if got, _ := result.EncodeMeta(m); bytes.Contains(got, []byte("stamped_headers")) {
		t.Errorf("encoded %s", got)
	}
}
