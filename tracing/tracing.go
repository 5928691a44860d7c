package tracing

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/gworker/gworker/internal/version"
	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/worker"
)

// InstrumentationName names the tracer of the spans this package makes.
const InstrumentationName = "github.com/gworker/gworker/tracing"

// Span names and attribute keys, as opentelemetry-instrumentation-celery
// has them.
const (
	RunSpanPrefix        = "run/"
	ApplyAsyncSpanPrefix = "apply_async/"

	AttrAction         = "celery.action"
	AttrTaskName       = "celery.task_name"
	AttrState          = "celery.state"
	AttrRetries        = "celery.retries"
	AttrHostname       = "celery.hostname"
	AttrReplyTo        = "celery.reply_to"
	AttrETA            = "celery.eta"
	AttrExpires        = "celery.expires"
	AttrExchange       = "celery.exchange"
	AttrRetryReason    = "celery.retry.reason"
	AttrMessageID      = "messaging.message.id"
	AttrDestination    = "messaging.destination"
	AttrConversationID = "messaging.conversation_id"
)

// Config configures a Tracing made by New.
type Config struct {
	// TracerProvider makes the spans; nil records none (the trace
	// context still passes through).
	TracerProvider trace.TracerProvider
	// Propagator reads and writes the trace context in message headers;
	// nil is W3C tracecontext and baggage.
	Propagator propagation.TextMapPropagator
}

// Tracing traces the tasks a worker runs and the messages a producer
// publishes. Give its TaskMiddleware and PublishMiddleware to the App
// (gworker.WithMiddleware, gworker.WithPublishMiddleware), or to
// worker.Config and producer.Options.
type Tracing struct {
	tracer     trace.Tracer
	provider   trace.TracerProvider
	propagator propagation.TextMapPropagator
	recording  bool
	shutdown   func(context.Context) error
}

// DefaultPropagator is W3C tracecontext and baggage, the propagators the
// Python SDK defaults to (OTEL_PROPAGATORS=tracecontext,baggage).
func DefaultPropagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}

// New returns a Tracing on cfg's provider and propagator.
func New(cfg Config) *Tracing {
	t := &Tracing{provider: cfg.TracerProvider, propagator: cfg.Propagator, recording: cfg.TracerProvider != nil,
		shutdown: func(context.Context) error { return nil }}
	if t.provider == nil {
		t.provider = noop.NewTracerProvider()
	}
	if t.propagator == nil {
		t.propagator = DefaultPropagator()
	}
	t.tracer = t.provider.Tracer(InstrumentationName, trace.WithInstrumentationVersion(version.Version))
	return t
}

// Recording reports whether spans are recorded (a provider was given, or
// FromEnv found an exporter); without, only the context passes through.
func (t *Tracing) Recording() bool { return t.recording }

// TracerProvider returns the provider spans are made with.
func (t *Tracing) TracerProvider() trace.TracerProvider { return t.provider }

// Propagator returns the propagator of the message headers.
func (t *Tracing) Propagator() propagation.TextMapPropagator { return t.propagator }

// Shutdown exports the spans not exported yet and stops the provider
// FromEnv made (nothing for New's). Call it once the worker has stopped.
func (t *Tracing) Shutdown(ctx context.Context) error { return t.shutdown(ctx) }

// TaskMiddleware returns the worker middleware: each task runs under the
// trace context of its message, in a run/<task name> consumer span when
// spans are recorded.
func (t *Tracing) TaskMiddleware() worker.Middleware {
	return func(next worker.RunFunc) worker.RunFunc {
		return func(ctx context.Context, req *worker.Request) error {
			if len(req.Headers) > 0 {
				ctx = t.propagator.Extract(ctx, headerCarrier(req.Headers))
			}
			if !t.recording {
				return next(ctx, req)
			}
			ctx, span := t.tracer.Start(ctx, RunSpanPrefix+req.Task, trace.WithSpanKind(trace.SpanKindConsumer))
			err := next(ctx, req)
			if span.IsRecording() {
				span.SetAttributes(runAttributes(req, err)...)
				recordOutcome(span, err)
			}
			span.End()
			return err
		}
	}
}

// runAttributes are the run span's attributes, as the Python
// instrumentation takes them from the task's request.
func runAttributes(req *worker.Request, err error) []attribute.KeyValue {
	attrs := make([]attribute.KeyValue, 0, 10)
	attrs = append(attrs,
		attribute.String(AttrAction, "run"),
		attribute.String(AttrTaskName, req.Task),
		attribute.String(AttrMessageID, req.ID))
	attrs = appendString(attrs, AttrState, string(stateOf(err)))
	if req.Retries > 0 {
		attrs = append(attrs, attribute.Int(AttrRetries, req.Retries))
	}
	hostname := req.Hostname
	if req.Message != nil && req.Message.Origin != "" {
		hostname = req.Message.Origin // as the Python side, which reads origin last
	}
	attrs = appendString(attrs, AttrHostname, hostname)
	attrs = appendString(attrs, AttrDestination, req.DeliveryInfo.RoutingKey)
	attrs = appendString(attrs, AttrConversationID, req.CorrelationID)
	attrs = appendString(attrs, AttrReplyTo, req.ReplyTo)
	if req.ETA != nil {
		attrs = append(attrs, attribute.String(AttrETA, protocol.FormatTime(*req.ETA)))
	}
	if req.Expires != nil {
		attrs = append(attrs, attribute.String(AttrExpires, protocol.FormatTime(*req.Expires)))
	}
	var re *worker.RetryError
	if errors.As(err, &re) {
		attrs = append(attrs, attribute.String(AttrRetryReason, re.Error()))
	}
	return attrs
}

func appendString(attrs []attribute.KeyValue, key, v string) []attribute.KeyValue {
	if v == "" {
		return attrs
	}
	return append(attrs, attribute.String(key, v))
}

// stateOf is the state a task's RunFunc error stands for: none for a
// message that went back to the queue.
func stateOf(err error) result.State {
	var re *worker.RetryError
	switch {
	case err == nil:
		return result.Success
	case errors.As(err, &re):
		return result.Retry
	case errors.Is(err, worker.ErrTerminated):
		return result.Revoked
	case errors.Is(err, worker.ErrRequeued):
		return ""
	}
	return result.Failure
}

// recordOutcome records a failure on span with an error status.
func recordOutcome(span trace.Span, err error) {
	var failed *worker.TaskFailedError
	if !errors.As(err, &failed) {
		return
	}
	desc := failed.Exception.Error()
	span.RecordError(failed.Exception, trace.WithAttributes(
		attribute.String("exception.type", failed.Exception.Type)), trace.WithTimestamp(time.Now()))
	span.SetStatus(codes.Error, desc)
}

// PublishMiddleware returns the producer middleware: each publish runs in
// an apply_async/<task name> producer span when spans are recorded, and
// the current trace context (that span's, else the running task's) is
// written into the message's headers.
func (t *Tracing) PublishMiddleware() producer.Middleware {
	return func(next producer.PublishFunc) producer.PublishFunc {
		return func(ctx context.Context, msg producer.Message) error {
			if !t.recording {
				return next(ctx, t.inject(ctx, msg))
			}
			ctx, span := t.tracer.Start(ctx, ApplyAsyncSpanPrefix+msg.Task, trace.WithSpanKind(trace.SpanKindProducer))
			if span.IsRecording() {
				attrs := []attribute.KeyValue{
					attribute.String(AttrAction, "apply_async"),
					attribute.String(AttrMessageID, msg.ID),
					attribute.String(AttrTaskName, msg.Task),
				}
				attrs = appendString(attrs, AttrDestination, msg.Route.RoutingKey)
				attrs = appendString(attrs, AttrExchange, msg.Route.Exchange)
				span.SetAttributes(attrs...)
			}
			err := next(ctx, t.inject(ctx, msg))
			if err != nil {
				span.RecordError(err)
				span.SetStatus(codes.Error, err.Error())
			}
			span.End()
			return err
		}
	}
}

// inject returns msg with ctx's trace context in its headers, or msg
// itself when ctx has none.
func (t *Tracing) inject(ctx context.Context, msg producer.Message) producer.Message {
	if !trace.SpanContextFromContext(ctx).IsValid() && baggage.FromContext(ctx).Len() == 0 {
		return msg
	}
	carrier := propagation.MapCarrier{}
	t.propagator.Inject(ctx, carrier)
	if len(carrier) == 0 {
		return msg
	}
	return withHeaders(msg, carrier)
}
