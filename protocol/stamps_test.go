package protocol

import (
	"reflect"
	"testing"
)

// The stamps headers as a Celery 5.5.3 producer writes them (captured
// from chain(...).stamp(visitor).apply_async()), and an unstamped 5.5
// message's.
func TestMessageStampsFromCelery55Headers(t *testing.T) {
	stampedRaw := &RawMessage{ContentType: ContentTypeJSON, Body: []byte(`[[1, 2], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]`),
		Headers: map[string]any{"lang": "py", "task": "tasks.add", "id": "76aa45c6-ce27-49ef-8392-70916ca57138",
			"replaced_task_nesting": int64(0), "stamped_headers": []any{"mlist", "mystamp"},
			"stamps": map[string]any{"mlist": []any{"a", "b"}, "mystamp": "m1"}}}
	m, err := Decode(stampedRaw, DecodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := m.StampedHeaders(); !reflect.DeepEqual(got, []string{"mlist", "mystamp"}) {
		t.Errorf("StampedHeaders %v", got)
	}
	if got := m.Stamps(); !reflect.DeepEqual(got, map[string]any{"mlist": []any{"a", "b"}, "mystamp": "m1"}) {
		t.Errorf("Stamps %v", got)
	}
	plain := &Message{Headers: map[string]any{"stamped_headers": nil, "stamps": map[string]any{}}}
	if plain.StampedHeaders() != nil || plain.Stamps() != nil {
		t.Errorf("an unstamped message has stamps: %v %v", plain.StampedHeaders(), plain.Stamps())
	}
	// Only the names stamped_headers lists are stamps; a listed name
	// without a value is None, as in Celery's Request.stamps.
	odd := &Message{Headers: map[string]any{"stamped_headers": "one", "stamps": map[string]any{"two": int64(2)}}}
	if got := odd.Stamps(); !reflect.DeepEqual(got, map[string]any{"one": nil}) {
		t.Errorf("Stamps %v", got)
	}
	var none *Message
	if none.StampedHeaders() != nil {
		t.Error("a nil message has stamps")
	}
}

func TestStampHeadersFromOptions(t *testing.T) {
	h, ok := StampHeadersFromOptions(map[string]any{"stamped_headers": []any{"k", "gone"}, "k": "v", "queue": "q"})
	want := map[string]any{"stamped_headers": []any{"k", "gone"}, "stamps": map[string]any{"k": "v", "gone": nil}}
	if !ok || !reflect.DeepEqual(h, want) {
		t.Errorf("got %v %v, want %v", h, ok, want)
	}
	for _, opts := range []map[string]any{nil, {"k": "v"}, {"stamped_headers": []any{}}, {"stamped_headers": nil}} {
		if h, ok := StampHeadersFromOptions(opts); ok || h != nil {
			t.Errorf("%v: stamps %v", opts, h)
		}
	}
}
