//go:build gworker_nootlp

package tracing

import (
	"context"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// newOTLPExporter refuses: the program was built without the exporters.
func newOTLPExporter(context.Context, string) (sdktrace.SpanExporter, error) {
	return nil, ErrNoOTLP
}
