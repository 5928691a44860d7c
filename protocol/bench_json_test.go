package protocol

import "testing"

func BenchmarkUnmarshalJSON(b *testing.B) {
	body := loadVector(b, "amqp/v2_json_unicode_nested").Body
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := UnmarshalJSON(body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMarshalJSON(b *testing.B) {
	v, err := unmarshalJSONOrdered(loadVector(b, "amqp/v2_json_unicode_nested").Body)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := MarshalJSON(v); err != nil {
			b.Fatal(err)
		}
	}
}
