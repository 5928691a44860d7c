package logging

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/gworker/gworker/config"
)

// The text format is Celery's line; the JSON format is one object per
// line with Celery's level names, for log shippers.
func TestFormats(t *testing.T) {
	var text, js bytes.Buffer
	lt, err := NewFormat("INFO", config.LogFormatText, &text)
	if err != nil {
		t.Fatal(err)
	}
	lj, err := NewFormat("INFO", config.LogFormatJSON, &js)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []*zap.Logger{lt, lj} {
		l.Warn("Task tasks.add[x] raised", zap.Duration("runtime", 1500*time.Millisecond), zap.String("task_id", "x"))
		l.Debug("not at INFO")
	}
	if s := text.String(); !strings.Contains(s, ": WARNING/MainProcess] Task tasks.add[x] raised") || strings.Contains(s, "not at INFO") {
		t.Errorf("text line %q", s)
	}
	lines := strings.Split(strings.TrimSpace(js.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("json: %d lines: %q", len(lines), js.String())
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &m); err != nil {
		t.Fatalf("json line %q: %v", lines[0], err)
	}
	if m["level"] != "WARNING" || m["msg"] != "Task tasks.add[x] raised" || m["task_id"] != "x" || m["runtime"] != 1.5 {
		t.Errorf("json fields %v", m)
	}
	if _, err := time.Parse(time.RFC3339Nano, m["time"].(string)); err != nil {
		t.Errorf("time %v: %v", m["time"], err)
	}
}
