// Package tracing traces tasks with OpenTelemetry, as Python's
// opentelemetry-instrumentation-celery does, so that one trace runs from
// a Python producer through a gworker task to the Python tasks it sends.
//
// It plugs into the two middleware seams of gworker:
//
//   - TaskMiddleware (a worker.Middleware) continues the trace context a
//     message carries — the W3C traceparent, tracestate and baggage
//     headers the Python instrumentation writes, or the same keys nested in
//     headers["headers"], where Sentry and dd-trace put theirs — and runs
//     the task in a consumer span named run/<task name> with the
//     instrumentation's attributes (celery.action, celery.task_name,
//     messaging.message.id, celery.state, ...); a failure is recorded on it
//     with an error status.
//   - PublishMiddleware (a producer.Middleware) wraps every publish in a
//     producer span named apply_async/<task name> and writes the trace
//     context into the message's headers: tasks sent with SendTask, from
//     inside a task or not, and what the worker publishes after a task
//     (callbacks, chain links, chord bodies, errbacks, retries).
//
// FromEnv configures both from the standard OTEL_* environment variables;
// New takes a TracerProvider and propagator of the caller's. Without an
// exporter configured no span is recorded, but the trace context still
// passes through: a task continues its message's trace context into what
// it publishes, so the trace of the Python side is not cut.
package tracing
