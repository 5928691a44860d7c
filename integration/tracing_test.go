package integration

import (
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/gworker/gworker/internal/testing/testenv"
)

// pyTraceModule is a Celery app whose task reports the trace context its
// request carries, where opentelemetry-instrumentation-celery reads it
// (getattr(task.request, 'traceparent')).
const pyTraceModule = `
import json, os
from celery import Celery
app = Celery('pytrace')
app.conf.update(broker_url=os.environ['GW_BROKER'], result_backend=os.environ['GW_BACKEND'])

@app.task(name='tasks.pytrace', bind=True)
def pytrace(self, value):
    return {'value': value, 'traceparent': getattr(self.request, 'traceparent', None),
            'tracestate': getattr(self.request, 'tracestate', None),
            'baggage': getattr(self.request, 'baggage', None)}
`

// otlpReceiver keeps the spans of the OTLP/HTTP export requests it gets.
type otlpReceiver struct {
	mu    sync.Mutex
	spans []*tracepb.Span
}

func (r *otlpReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	var ex collectorpb.ExportTraceServiceRequest
	if err := proto.Unmarshal(body, &ex); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	for _, rs := range ex.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			r.spans = append(r.spans, ss.Spans...)
		}
	}
	r.mu.Unlock()
	out, _ := proto.Marshal(&collectorpb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func (r *otlpReceiver) span(id string) *tracepb.Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.spans {
		if hex.EncodeToString(s.SpanId) == id {
			return s
		}
	}
	return nil
}

// TestTracePythonGoPython sends a task from Python with the trace context
// opentelemetry-instrumentation-celery writes in its headers (Python's
// opentelemetry packages are not installed here, so the script writes
// them as the instrumentation does) to the gworker binary exporting over
// OTLP/HTTP; its link callback runs on a Python worker, whose request must
// carry the same trace, under the span gworker exported for the publish.
func TestTracePythonGoPython(t *testing.T) {
	t.Parallel()
	rcv := &otlpReceiver{}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	qGo, qPy := uniqueQueue(t, "trace-go"), uniqueQueue(t, "trace-py")

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "pytrace.py"), []byte(pyTraceModule), 0o644); err != nil {
		t.Fatal(err)
	}
	name := "pytrace-" + testenv.Suffix() + "@%h"
	cmd := exec.Command(testenv.Python(), "-m", "celery", "-A", "pytrace", "worker",
		"-P", "solo", "-Q", qPy, "-n", name, "-l", "INFO", "--without-mingle", "--without-gossip", "--without-heartbeat")
	cmd.Dir = dir
	cmd.Env = append(cleanEnv(), "GW_BROKER="+env.brokerURL, "GW_BACKEND="+backendURL,
		"PYTHONPATH="+dir, "PYTHONDONTWRITEBYTECODE=1")
	runPyWorker(t, cmd, name, "celery worker", 60*time.Second)

	w := startWorker(t, workerOptions{Queues: []string{qGo}, Env: []string{
		"OTEL_EXPORTER_OTLP_ENDPOINT=" + srv.URL, "OTEL_BSP_SCHEDULE_DELAY=100", "OTEL_SERVICE_NAME=gworker-it"}})

	const pyTrace, pySpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	r := pyClient{}.run(t, `
import uuid
cb = app.signature('tasks.pytrace', queue='`+qPy+`').set(task_id=str(uuid.uuid4()))
res = track(app.send_task('tasks.add', (2, 3), queue='`+qGo+`', link=cb, headers={
    'traceparent': '00-`+pyTrace+`-`+pySpan+`-01', 'tracestate': 'vendor=x', 'baggage': 'user=alice'}))
emit(add=res.get(timeout=TIMEOUT))
cbres = track(app.AsyncResult(cb.id))
emit(callback=cbres.get(timeout=TIMEOUT))
`)
	var got struct {
		Value       int     `json:"value"`
		Traceparent *string `json:"traceparent"`
		Tracestate  *string `json:"tracestate"`
		Baggage     *string `json:"baggage"`
	}
	r.get(t, "callback", &got)
	if got.Value != 5 || got.Traceparent == nil {
		t.Fatalf("the Python callback's request: %+v", got)
	}
	parts := strings.Split(*got.Traceparent, "-")
	if len(parts) != 4 || parts[1] != pyTrace || parts[2] == pySpan {
		t.Fatalf("the Python callback's traceparent %s: want trace %s under a span of gworker's", *got.Traceparent, pyTrace)
	}
	if got.Tracestate == nil || *got.Tracestate != "vendor=x" || got.Baggage == nil || *got.Baggage != "user=alice" {
		t.Errorf("tracestate %v, baggage %v not carried on", got.Tracestate, got.Baggage)
	}
	// The binary flushes its spans when it exits.
	if err := w.stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	pub := rcv.span(parts[2])
	if pub == nil || pub.Name != "apply_async/tasks.pytrace" {
		t.Fatalf("the callback's parent span %s was not exported as apply_async/tasks.pytrace: %v", parts[2], pub)
	}
	run := rcv.span(hex.EncodeToString(pub.ParentSpanId))
	if run == nil || run.Name != "run/tasks.add" || hex.EncodeToString(run.ParentSpanId) != pySpan || hex.EncodeToString(run.TraceId) != pyTrace {
		t.Fatalf("the publish's parent: %v, want run/tasks.add under the Python span %s", run, pySpan)
	}
}
