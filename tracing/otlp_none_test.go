//go:build gworker_nootlp

package tracing_test

import (
	"context"
	"errors"
	"testing"

	"github.com/gworker/gworker/tracing"
)

// A program built without the exporters refuses to export, and passes
// the context on when nothing is to be exported.
func TestWithoutOTLPExporters(t *testing.T) {
	t.Setenv(tracing.EnvEndpoint, "http://127.0.0.1:1")
	t.Setenv(tracing.EnvSDKDisabled, "")
	t.Setenv(tracing.EnvTracesExporter, "")
	if _, err := tracing.FromEnv(context.Background()); !errors.Is(err, tracing.ErrNoOTLP) {
		t.Fatalf("export asked for: %v", err)
	}
	t.Setenv(tracing.EnvEndpoint, "")
	if tr, err := tracing.FromEnv(context.Background()); err != nil || tr.Recording() {
		t.Fatalf("nothing asked for: %v", err)
	}
}
