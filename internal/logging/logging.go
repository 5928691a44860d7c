// Package logging builds the logger of the App and of the command line:
// zap writing lines shaped like Celery's.
package logging

import (
	"io"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/gworker/gworker/config"
)

// New returns a zap logger writing lines shaped like Celery's to
// out, which log scrapers written for Celery read unchanged:
//
//	[2026-01-02 03:04:05,678: INFO/MainProcess] Task tasks.add[...] received
//
// Fields follow the message; durations print as 1.5s, not nanoseconds.
func New(level string, out io.Writer) (*zap.Logger, error) {
	return NewFormat(level, config.LogFormatText, out)
}

// NewFormat is New in a format: config.LogFormatText (Celery's lines) or
// config.LogFormatJSON, one object per line with the time in RFC 3339,
// the level by Celery's name, the message and the fields:
//
//	{"time":"2026-01-02T03:04:05.678Z","level":"INFO","msg":"Task tasks.add[...] received"}
func NewFormat(level, format string, out io.Writer) (*zap.Logger, error) {
	lvl, err := config.ParseLogLevel(level)
	if err != nil {
		return nil, err
	}
	if format == config.LogFormatJSON {
		enc := zapcore.NewJSONEncoder(zapcore.EncoderConfig{
			TimeKey: "time", LevelKey: "level", NameKey: "logger", MessageKey: "msg",
			EncodeTime: zapcore.RFC3339NanoTimeEncoder,
			EncodeLevel: func(l zapcore.Level, e zapcore.PrimitiveArrayEncoder) {
				e.AppendString(celeryLevel(l))
			},
			EncodeDuration: zapcore.SecondsDurationEncoder,
			EncodeName:     zapcore.FullNameEncoder,
		})
		return zap.New(zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(out)), lvl)), nil
	}
	enc := zapcore.NewConsoleEncoder(zapcore.EncoderConfig{
		TimeKey:    "time",
		LevelKey:   "level",
		MessageKey: "msg",
		EncodeTime: func(t time.Time, e zapcore.PrimitiveArrayEncoder) {
			e.AppendString("[" + t.Format("2006-01-02 15:04:05,000") + ":")
		},
		EncodeLevel: func(l zapcore.Level, e zapcore.PrimitiveArrayEncoder) {
			e.AppendString(celeryLevel(l) + "/MainProcess]")
		},
		EncodeDuration:   zapcore.StringDurationEncoder,
		ConsoleSeparator: " ",
	})
	core := zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(out)), lvl)
	return zap.New(core), nil
}

// celeryLevel is the name Celery's logging gives a level.
func celeryLevel(l zapcore.Level) string {
	switch l {
	case zapcore.WarnLevel:
		return "WARNING"
	case zapcore.DPanicLevel:
		return "CRITICAL"
	}
	return l.CapitalString()
}
