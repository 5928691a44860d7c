package tracing

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"go.opentelemetry.io/otel/propagation"
)

// The environment variables FromEnv reads itself; the OTLP exporters and
// the SDK read the others (OTEL_EXPORTER_OTLP_ENDPOINT, _HEADERS,
// _TIMEOUT, _INSECURE..., OTEL_TRACES_SAMPLER, OTEL_BSP_*,
// OTEL_RESOURCE_ATTRIBUTES).
const (
	EnvSDKDisabled    = "OTEL_SDK_DISABLED"
	EnvTracesExporter = "OTEL_TRACES_EXPORTER"
	EnvProtocol       = "OTEL_EXPORTER_OTLP_PROTOCOL"
	EnvTracesProtocol = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	EnvEndpoint       = "OTEL_EXPORTER_OTLP_ENDPOINT"
	EnvTracesEndpoint = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	EnvPropagators    = "OTEL_PROPAGATORS"
	EnvServiceName    = "OTEL_SERVICE_NAME"
)

// DefaultServiceName is the service.name of the spans when neither
// OTEL_SERVICE_NAME nor OTEL_RESOURCE_ATTRIBUTES name one.
const DefaultServiceName = "gworker"

// Errors of FromEnv.
var (
	// ErrBadEnv: an OTEL_* variable has a value FromEnv does not support.
	ErrBadEnv = errors.New("tracing: unsupported OpenTelemetry setting")
	// ErrNoOTLP: spans are to be exported, but the program was built
	// without the OTLP exporters (-tags gworker_nootlp).
	ErrNoOTLP = errors.New("tracing: this program was built without the OTLP exporters (-tags gworker_nootlp)")
)

// FromEnv configures tracing from the standard OpenTelemetry environment
// variables, as the Python SDK's auto-configuration reads them, except
// that nothing is exported unless asked for:
//
//   - spans are recorded and exported over OTLP when OTEL_TRACES_EXPORTER
//     is "otlp", or is unset while OTEL_EXPORTER_OTLP_ENDPOINT (or
//     _TRACES_ENDPOINT) is set; "none", OTEL_SDK_DISABLED=true or nothing
//     set records none, and costs nothing at start;
//   - OTEL_EXPORTER_OTLP_PROTOCOL (or _TRACES_PROTOCOL) is "http/protobuf"
//     (the default) or "grpc";
//   - OTEL_PROPAGATORS lists "tracecontext", "baggage" or "none" (default
//     "tracecontext,baggage"), used whether spans are recorded or not;
//   - OTEL_SERVICE_NAME names the service (default DefaultServiceName).
//
// Other values are refused with ErrBadEnv. Shutdown flushes the exporter.
//
// The OTLP exporters and the SDK link gRPC and the OTLP protocol buffers
// into the program, which cost it about 19 MB of binary and 5 MB of
// resident memory even when they are not used; a program built with -tags
// gworker_nootlp has none of them, only OpenTelemetry's API: it passes the
// trace context on and records nothing, and FromEnv refuses an exporter
// with ErrNoOTLP.
func FromEnv(ctx context.Context) (*Tracing, error) {
	prop, err := propagatorFromEnv()
	if err != nil {
		return nil, err
	}
	exporter, err := exporterFromEnv()
	if err != nil {
		return nil, err
	}
	if exporter == "" {
		return New(Config{Propagator: prop}), nil
	}
	proto := protocolFromEnv()
	if proto != "http/protobuf" && proto != "grpc" {
		return nil, fmt.Errorf("%w: %s=%q (http/protobuf or grpc)", ErrBadEnv, EnvProtocol, proto)
	}
	tp, shutdown, err := newOTLPProvider(ctx, proto)
	if err != nil {
		return nil, err
	}
	t := New(Config{TracerProvider: tp, Propagator: prop})
	t.shutdown = shutdown
	return t, nil
}

// exporterFromEnv returns "otlp", or "" when no span is to be exported.
func exporterFromEnv() (string, error) {
	if strings.EqualFold(strings.TrimSpace(os.Getenv(EnvSDKDisabled)), "true") {
		return "", nil
	}
	v := strings.TrimSpace(os.Getenv(EnvTracesExporter))
	if v == "" {
		if os.Getenv(EnvEndpoint) == "" && os.Getenv(EnvTracesEndpoint) == "" {
			return "", nil
		}
		v = "otlp"
	}
	switch v {
	case "otlp":
		return "otlp", nil
	case "none":
		return "", nil
	}
	return "", fmt.Errorf("%w: %s=%q (otlp or none)", ErrBadEnv, EnvTracesExporter, v)
}

func protocolFromEnv() string {
	if v := strings.TrimSpace(os.Getenv(EnvTracesProtocol)); v != "" {
		return v
	}
	if v := strings.TrimSpace(os.Getenv(EnvProtocol)); v != "" {
		return v
	}
	return "http/protobuf"
}

func propagatorFromEnv() (propagation.TextMapPropagator, error) {
	v := strings.TrimSpace(os.Getenv(EnvPropagators))
	if v == "" {
		return DefaultPropagator(), nil
	}
	var props []propagation.TextMapPropagator
	for _, name := range strings.Split(v, ",") {
		switch strings.TrimSpace(name) {
		case "tracecontext":
			props = append(props, propagation.TraceContext{})
		case "baggage":
			props = append(props, propagation.Baggage{})
		case "none":
			return propagation.NewCompositeTextMapPropagator(), nil
		case "":
		default:
			return nil, fmt.Errorf("%w: %s has %q (tracecontext, baggage or none)", ErrBadEnv, EnvPropagators, name)
		}
	}
	return propagation.NewCompositeTextMapPropagator(props...), nil
}
