//go:build !gworker_nootlp

package tracing_test

import (
	"context"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/gworker/gworker/gworkertest"
	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/tracing"
	"github.com/gworker/gworker/worker"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"))
}

// receiver is an OTLP collector: it decodes the trace export requests it
// is sent (OTLP/HTTP protobuf, or gRPC) and keeps their spans.
type receiver struct {
	collectorpb.UnimplementedTraceServiceServer
	mu      sync.Mutex
	spans   []*tracepb.Span
	service []string
}

func (r *receiver) keep(req *collectorpb.ExportTraceServiceRequest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.ResourceSpans {
		for _, a := range rs.GetResource().GetAttributes() {
			if a.Key == "service.name" {
				r.service = append(r.service, a.Value.GetStringValue())
			}
		}
		for _, ss := range rs.ScopeSpans {
			r.spans = append(r.spans, ss.Spans...)
		}
	}
}

// Export is the gRPC service.
func (r *receiver) Export(_ context.Context, req *collectorpb.ExportTraceServiceRequest) (*collectorpb.ExportTraceServiceResponse, error) {
	r.keep(req)
	return &collectorpb.ExportTraceServiceResponse{}, nil
}

// ServeHTTP is the OTLP/HTTP endpoint.
func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.URL.Path != "/v1/traces" || req.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "unexpected "+req.URL.Path+" "+req.Header.Get("Content-Type"), http.StatusBadRequest)
		return
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var ex collectorpb.ExportTraceServiceRequest
	if err := proto.Unmarshal(body, &ex); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.keep(&ex)
	out, _ := proto.Marshal(&collectorpb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func (r *receiver) all() []*tracepb.Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*tracepb.Span(nil), r.spans...)
}

func (r *receiver) byID(id []byte) *tracepb.Span {
	for _, s := range r.all() {
		if string(s.SpanId) == string(id) {
			return s
		}
	}
	return nil
}

func (r *receiver) named(name string) []*tracepb.Span {
	var out []*tracepb.Span
	for _, s := range r.all() {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

func attr(s *tracepb.Span, key string) any {
	for _, a := range s.Attributes {
		if a.Key == key {
			switch v := a.Value.Value.(type) {
			case *commonpb.AnyValue_StringValue:
				return v.StringValue
			case *commonpb.AnyValue_IntValue:
				return v.IntValue
			}
		}
	}
	return nil
}

// The crafted trace context of messages sent by an instrumented Python
// producer: opentelemetry-instrumentation-celery's top-level headers, or
// Sentry's nested ones.
const (
	pyTrace    = "4bf92f3577b34da6a3ce929d0e0e4736"
	pySpan     = "00f067aa0ba902b7"
	nestTrace  = "0af7651916cd43dd8448eb211c80319c"
	nestSpan   = "b7ad6b7169203331"
	retryTrace = "11111111111111111111111111111111"
	chordTrace = "22222222222222222222222222222222"
	pyQueue    = "python"
)

func traceparent(traceID, spanID string) string { return "00-" + traceID + "-" + spanID + "-01" }

// pySig is a signature of a Python task, routed to the Python queue.
func pySig(name string) protocol.Signature {
	return protocol.Signature{Task: name, Args: []any{}, Kwargs: map[string]any{}, Options: map[string]any{"queue": pyQueue}}
}

type world struct {
	env *gworkertest.Env
	py  *producer.Producer // the Python producer: no middleware
}

func newWorld(t *testing.T, tr *tracing.Tracing) *world {
	reg := worker.NewRegistry()
	var env *gworkertest.Env
	reg.MustRegister("tr.parent", func(ctx context.Context) (int, error) {
		// SendTask from inside a task, under the task's context.
		_, err := env.Producer.SendTask(ctx, "py.child", nil, nil, producer.Queue(pyQueue))
		return 1, err
	})
	reg.MustRegister("tr.fail", func() (any, error) { return nil, worker.PyError("KeyError", "x") })
	reg.MustRegister("tr.add", func(a, b int) int { return a + b })
	reg.MustRegister("tr.flaky", func(ctx context.Context) (int, error) {
		req, _ := worker.RequestFromContext(ctx)
		if req.Retries < 1 {
			return 0, worker.Retry(errors.New("not yet"), worker.Countdown(0), worker.MaxRetries(1))
		}
		return req.Retries, nil
	})
	env = gworkertest.NewEnv(t, gworkertest.Config{Registry: reg, Queue: "go",
		Worker:   worker.Config{Middleware: []worker.Middleware{tr.TaskMiddleware()}},
		Producer: producer.Options{Middleware: []producer.Middleware{tr.PublishMiddleware()}}})
	if err := env.Broker.DeclareTaskQueue(context.Background(), pyQueue); err != nil {
		t.Fatal(err)
	}
	if err := env.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return &world{env: env, py: producer.New(env.Broker, producer.Options{DefaultQueue: "go"})}
}

func (w *world) send(t *testing.T, name string, args []any, opts ...producer.Option) string {
	t.Helper()
	r, err := w.py.SendTask(context.Background(), name, args, nil, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return r.ID()
}

// sendAll sends what a Python producer would, and returns the ids of the
// retried task.
func (w *world) sendAll(t *testing.T) (flaky string) {
	w.send(t, "tr.parent", nil,
		producer.Headers(map[string]any{"traceparent": traceparent(pyTrace, pySpan), "tracestate": "vendor=x", "baggage": "user=alice"}),
		producer.Link(pySig("py.callback")), producer.Chain(pySig("py.next")))
	w.send(t, "tr.fail", nil,
		producer.Headers(map[string]any{"headers": map[string]any{"traceparent": traceparent(nestTrace, nestSpan)}}),
		producer.LinkError(pySig("py.errback")))
	flaky = w.send(t, "tr.flaky", nil, producer.Headers(map[string]any{"traceparent": traceparent(retryTrace, pySpan)}))
	gid := producer.NewID()
	if err := w.env.Backend.SetChordSize(context.Background(), gid, 1); err != nil {
		t.Fatal(err)
	}
	w.send(t, "tr.add", []any{1, 2}, producer.Headers(map[string]any{"traceparent": traceparent(chordTrace, pySpan)}),
		producer.GroupID(gid), producer.GroupIndex(0), producer.Chord(pySig("py.chord_body")))
	return flaky
}

// pyMessages waits for n messages on the Python queue and returns them by
// task name.
func (w *world) pyMessages(t *testing.T, n int) map[string]protocol.RawMessage {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		msgs, err := w.env.Broker.Messages(pyQueue)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) >= n {
			out := map[string]protocol.RawMessage{}
			for _, m := range msgs {
				out[m.Headers["task"].(string)] = m
			}
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d messages on the Python queue, want %d", len(msgs), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (w *world) wait(t *testing.T, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := w.env.Wait(ctx, id); err != nil {
		t.Fatal(err)
	}
}

// parseParent splits a traceparent header into its trace and span ids.
func parseParent(t *testing.T, h any) (traceID, spanID string) {
	t.Helper()
	s, _ := h.(string)
	parts := strings.Split(s, "-")
	if len(parts) != 4 || len(parts[1]) != 32 || len(parts[2]) != 16 {
		t.Fatalf("traceparent %q", h)
	}
	return parts[1], parts[2]
}

func hexID(b []byte) string { return hex.EncodeToString(b) }

func setOTLPEnv(t *testing.T, endpoint, protocol string) {
	t.Setenv(tracing.EnvEndpoint, endpoint)
	t.Setenv(tracing.EnvProtocol, protocol)
	t.Setenv(tracing.EnvServiceName, "gworker-test")
	t.Setenv(tracing.EnvTracesExporter, "")
	t.Setenv(tracing.EnvPropagators, "")
	t.Setenv(tracing.EnvSDKDisabled, "")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
}

func TestSpansExportedOverOTLPHTTPAndContextInEveryFollowup(t *testing.T) {
	rcv := &receiver{}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	setOTLPEnv(t, srv.URL, "http/protobuf")
	ctx := context.Background()
	tr, err := tracing.FromEnv(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !tr.Recording() {
		t.Fatal("an OTLP endpoint is set: spans must be recorded")
	}
	w := newWorld(t, tr)
	flaky := w.sendAll(t)
	// SendTask outside any task: a new trace, rooted in its apply_async span.
	if _, err := w.env.Producer.SendTask(ctx, "py.top", nil, nil, producer.Queue(pyQueue)); err != nil {
		t.Fatal(err)
	}
	msgs := w.pyMessages(t, 6)
	w.wait(t, flaky)
	if err := w.env.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tr.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	// Every follow-up continues the trace of the message that caused it:
	// its parent is the apply_async span of its publish, whose parent is
	// the task's run span, whose parent is the Python producer's span.
	for name, want := range map[string]struct{ trace, task, parent string }{
		"py.callback":   {pyTrace, "tr.parent", pySpan},
		"py.next":       {pyTrace, "tr.parent", pySpan},
		"py.child":      {pyTrace, "tr.parent", pySpan},
		"py.errback":    {nestTrace, "tr.fail", nestSpan},
		"py.chord_body": {chordTrace, "tr.add", pySpan},
	} {
		m, ok := msgs[name]
		if !ok {
			t.Errorf("%s was not published", name)
			continue
		}
		traceID, spanID := parseParent(t, m.Headers["traceparent"])
		if traceID != want.trace {
			t.Errorf("%s: trace %s, want %s", name, traceID, want.trace)
			continue
		}
		pub := rcv.byID(mustHex(t, spanID))
		if pub == nil || pub.Name != "apply_async/"+name || pub.Kind != tracepb.Span_SPAN_KIND_PRODUCER {
			t.Errorf("%s: its parent span %s is not an exported apply_async span: %v", name, spanID, pub)
			continue
		}
		run := rcv.byID(pub.ParentSpanId)
		if run == nil || run.Name != "run/"+want.task || run.Kind != tracepb.Span_SPAN_KIND_CONSUMER || hexID(run.ParentSpanId) != want.parent {
			t.Errorf("%s: the publish's parent is %v, want run/%s under %s", name, run, want.task, want.parent)
		}
	}
	if m := msgs["py.callback"]; m.Headers["tracestate"] != "vendor=x" || m.Headers["baggage"] != "user=alice" {
		t.Errorf("tracestate and baggage not carried on: %v", m.Headers)
	}
	top, _ := parseParent(t, msgs["py.top"].Headers["traceparent"])
	if s := rcv.named("apply_async/py.top"); len(s) != 1 || hexID(s[0].TraceId) != top || len(s[0].ParentSpanId) != 0 {
		t.Errorf("SendTask outside a task: %v, trace %s", s, top)
	}

	runs := rcv.named("run/tr.parent")
	if len(runs) != 1 {
		t.Fatalf("run/tr.parent spans: %d", len(runs))
	}
	for key, want := range map[string]any{"celery.action": "run", "celery.task_name": "tr.parent", "celery.state": "SUCCESS",
		"messaging.destination": "go"} {
		if got := attr(runs[0], key); got != want {
			t.Errorf("run span %s = %v, want %v", key, got, want)
		}
	}
	if attr(runs[0], "messaging.message.id") == nil {
		t.Error("run span has no messaging.message.id")
	}
	fails := rcv.named("run/tr.fail")
	if len(fails) != 1 || fails[0].Status.GetCode() != tracepb.Status_STATUS_CODE_ERROR || attr(fails[0], "celery.state") != "FAILURE" ||
		len(fails[0].Events) == 0 || fails[0].Events[0].Name != "exception" || hexID(fails[0].TraceId) != nestTrace {
		t.Errorf("failed task's span: %v", fails)
	}

	// The retry: two runs in one trace, the second under the publish of
	// the retry made in the first.
	flakes := rcv.named("run/tr.flaky")
	if len(flakes) != 2 {
		t.Fatalf("run/tr.flaky spans: %d", len(flakes))
	}
	first, second := flakes[0], flakes[1]
	if attr(first, "celery.state") != "RETRY" {
		first, second = second, first
	}
	pub := rcv.byID(second.ParentSpanId)
	if attr(first, "celery.state") != "RETRY" || attr(first, "celery.retry.reason") == nil || attr(second, "celery.state") != "SUCCESS" ||
		attr(second, "celery.retries") != int64(1) || pub == nil || pub.Name != "apply_async/tr.flaky" ||
		string(pub.ParentSpanId) != string(first.SpanId) || hexID(second.TraceId) != retryTrace {
		t.Errorf("retry spans: first %v, second %v, publish %v", first, second, pub)
	}
	rcv.mu.Lock()
	if len(rcv.service) == 0 || rcv.service[0] != "gworker-test" {
		t.Errorf("service.name %v", rcv.service)
	}
	rcv.mu.Unlock()
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestOTLPOverGRPC(t *testing.T) {
	rcv := &receiver{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	collectorpb.RegisterTraceServiceServer(gs, rcv)
	go func() { _ = gs.Serve(ln) }()
	defer gs.Stop()
	setOTLPEnv(t, "http://"+ln.Addr().String(), "grpc")
	ctx := context.Background()
	tr, err := tracing.FromEnv(ctx)
	if err != nil {
		t.Fatal(err)
	}
	w := newWorld(t, tr)
	id := w.send(t, "tr.add", []any{1, 2}, producer.Headers(map[string]any{"traceparent": traceparent(pyTrace, pySpan)}))
	w.wait(t, id)
	if err := w.env.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tr.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	runs := rcv.named("run/tr.add")
	if len(runs) != 1 || hexID(runs[0].TraceId) != pyTrace || hexID(runs[0].ParentSpanId) != pySpan {
		t.Fatalf("run/tr.add over gRPC: %v", runs)
	}
}

// Without an exporter nothing is recorded, but the context of a message
// goes on into what its task publishes, unchanged.
func TestWithoutExporterTheContextPassesThrough(t *testing.T) {
	setOTLPEnv(t, "", "")
	tr, err := tracing.FromEnv(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if tr.Recording() {
		t.Fatal("nothing configured: no span may be recorded")
	}
	w := newWorld(t, tr)
	w.sendAll(t)
	w.send(t, "tr.add", []any{1, 1}, producer.Link(pySig("py.plain")))
	msgs := w.pyMessages(t, 6)
	for name, want := range map[string]string{
		"py.callback":   traceparent(pyTrace, pySpan),
		"py.child":      traceparent(pyTrace, pySpan),
		"py.errback":    traceparent(nestTrace, nestSpan),
		"py.chord_body": traceparent(chordTrace, pySpan),
	} {
		if got := msgs[name].Headers["traceparent"]; got != want {
			t.Errorf("%s: traceparent %v, want %s", name, got, want)
		}
	}
	if msgs["py.callback"].Headers["baggage"] != "user=alice" {
		t.Errorf("baggage: %v", msgs["py.callback"].Headers)
	}
	if h, ok := msgs["py.plain"].Headers["traceparent"]; ok {
		t.Errorf("a message without a trace context made one: %v", h)
	}
}

func TestFromEnvRefusesWhatItCannotDo(t *testing.T) {
	for _, c := range []struct{ key, value string }{
		{tracing.EnvTracesExporter, "zipkin"},
		{tracing.EnvPropagators, "tracecontext,b3"},
		{tracing.EnvProtocol, "http/json"},
	} {
		t.Run(c.value, func(t *testing.T) {
			setOTLPEnv(t, "http://127.0.0.1:1", "")
			t.Setenv(c.key, c.value)
			if _, err := tracing.FromEnv(context.Background()); !errors.Is(err, tracing.ErrBadEnv) {
				t.Fatalf("%s=%s: %v", c.key, c.value, err)
			}
		})
	}
	setOTLPEnv(t, "http://127.0.0.1:1", "")
	t.Setenv(tracing.EnvSDKDisabled, "true")
	if tr, err := tracing.FromEnv(context.Background()); err != nil || tr.Recording() {
		t.Fatalf("OTEL_SDK_DISABLED=true: recording %v, %v", tr != nil && tr.Recording(), err)
	}
}
