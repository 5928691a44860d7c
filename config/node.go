package config

import (
	"fmt"
	"os"
	"strings"

	"go.uber.org/zap/zapcore"

	"github.com/gworker/gworker/protocol"
)

// ExpandHostname expands %h (host name), %n (its first label), %d (its
// domain) and %% as celery worker -n does.
func ExpandHostname(s string) string {
	host, _ := os.Hostname()
	short, domain, _ := strings.Cut(host, ".")
	r := strings.NewReplacer("%h", host, "%n", short, "%d", domain, "%%", "%")
	return r.Replace(s)
}

// AcceptContentTypes turns serializer names (accept_content: "json",
// "msgpack", or their content types) into the content types a worker
// accepts. pickle and yaml are refused.
func AcceptContentTypes(names []string) ([]string, error) {
	var out []string
	for _, name := range names {
		switch strings.TrimSpace(strings.ToLower(name)) {
		case "json", protocol.ContentTypeJSON:
			out = append(out, protocol.ContentTypeJSON)
		case "msgpack", protocol.ContentTypeMsgpack:
			out = append(out, protocol.ContentTypeMsgpack)
		case "":
		default:
			return nil, fmt.Errorf("unsupported content type %q: gworker accepts json and msgpack (never pickle or yaml)", name)
		}
	}
	return out, nil
}

// ParseLogLevel reads celery's log level names: DEBUG, INFO (and ""),
// WARNING (or WARN), ERROR, CRITICAL (or FATAL).
func ParseLogLevel(level string) (zapcore.Level, error) {
	switch strings.ToUpper(strings.TrimSpace(level)) {
	case "DEBUG":
		return zapcore.DebugLevel, nil
	case "INFO", "":
		return zapcore.InfoLevel, nil
	case "WARNING", "WARN":
		return zapcore.WarnLevel, nil
	case "ERROR":
		return zapcore.ErrorLevel, nil
	case "CRITICAL", "FATAL":
		return zapcore.DPanicLevel, nil
	}
	return 0, fmt.Errorf("unknown log level %q (DEBUG, INFO, WARNING, ERROR, CRITICAL, FATAL)", level)
}
