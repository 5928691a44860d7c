//go:build gworker_nootlp

package tracing

import (
	"context"

	"go.opentelemetry.io/otel/trace"
)

// newOTLPProvider refuses: the program was built without the exporters
// and the SDK.
func newOTLPProvider(context.Context, string) (trace.TracerProvider, func(context.Context) error, error) {
	return nil, nil, ErrNoOTLP
}
