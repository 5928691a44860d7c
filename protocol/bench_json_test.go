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

func BenchmarkDecodeV2JSON(b *testing.B) {
	raw := loadVector(b, "amqp/v2_json_add").raw(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(raw, DecodeOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeV2JSON(b *testing.B) {
	raw := loadVector(b, "amqp/v2_json_add").raw(b)
	m, err := Decode(raw, DecodeOptions{})
	if err != nil {
		b.Fatal(err)
	}
	m.ArgsRepr, m.KwargsRepr = "", ""
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Encode(m, EncodeOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}
