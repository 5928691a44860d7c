package protocol

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// vectorsDir holds golden messages captured from Celery 5.2.6 (copied from
// the project's shared vectors: amqp/ and amqp_worker/).
const vectorsDir = "testdata/vectors"

// vector is one captured AMQP message: the body bytes plus the sidecar.
type vector struct {
	Name         string
	Body         []byte
	Description  string `json:"description"`
	DeliveryInfo struct {
		Exchange    string `json:"exchange"`
		RoutingKey  string `json:"routing_key"`
		Redelivered bool   `json:"redelivered"`
	} `json:"delivery_info"`
	Properties  map[string]any  `json:"properties"`
	Headers     map[string]any  `json:"headers"`
	BodyDecoded json.RawMessage `json:"body_decoded"`
}

func loadVectors(t testing.TB) []*vector {
	t.Helper()
	var out []*vector
	for _, dir := range []string{"amqp", "amqp_worker"} {
		files, err := filepath.Glob(filepath.Join(vectorsDir, dir, "*.body.bin"))
		if err != nil {
			t.Fatal(err)
		}
		if len(files) == 0 {
			t.Fatalf("no vectors under %s: the golden files are missing from testdata", filepath.Join(vectorsDir, dir))
		}
		for _, f := range files {
			base := strings.TrimSuffix(f, ".body.bin")
			v := &vector{Name: dir + "/" + filepath.Base(base)}
			body, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			v.Body = body
			side, err := os.ReadFile(base + ".json")
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(side, v); err != nil {
				t.Fatalf("%s: %v", v.Name, err)
			}
			out = append(out, v)
		}
	}
	slices.SortFunc(out, func(a, b *vector) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func loadVector(t testing.TB, name string) *vector {
	t.Helper()
	for _, v := range loadVectors(t) {
		if v.Name == name {
			return v
		}
	}
	t.Fatalf("vector %s not found", name)
	return nil
}

func (v *vector) contentType() string {
	s, _ := v.Properties["content_type"].(string)
	return s
}

// raw builds the RawMessage a transport would deliver for the vector. The
// sidecar holds headers as decoded by encoding/json; numbers are turned
// into int64 as an AMQP transport delivers them.
func (v *vector) raw(t testing.TB) *RawMessage {
	t.Helper()
	hdrs, err := UnmarshalJSON(mustJSON(t, v.Headers))
	if err != nil {
		t.Fatal(err)
	}
	r := &RawMessage{
		Headers:     hdrs.(map[string]any),
		Body:        v.Body,
		Exchange:    v.DeliveryInfo.Exchange,
		RoutingKey:  v.DeliveryInfo.RoutingKey,
		Redelivered: v.DeliveryInfo.Redelivered,
	}
	p := v.Properties
	r.ContentType, _ = p["content_type"].(string)
	r.ContentEncoding, _ = p["content_encoding"].(string)
	r.CorrelationID, _ = p["correlation_id"].(string)
	r.ReplyTo, _ = p["reply_to"].(string)
	r.Expiration, _ = p["expiration"].(string)
	if dm, ok := p["delivery_mode"].(float64); ok {
		r.DeliveryMode = uint8(dm)
	}
	if pr, ok := p["priority"].(float64); ok {
		r.Priority, r.HasPriority = uint8(pr), true
	}
	return r
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// loadVectorsNoFail returns every vector body, for fuzz seeds.
func loadVectorsNoFail() ([][]byte, error) {
	var out [][]byte
	for _, dir := range []string{"amqp", "amqp_worker"} {
		files, err := filepath.Glob(filepath.Join(vectorsDir, dir, "*.body.bin"))
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				return nil, err
			}
			out = append(out, b)
		}
	}
	return out, nil
}
