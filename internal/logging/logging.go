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
	lvl, err := config.ParseLogLevel(level)
	if err != nil {
		return nil, err
	}
	enc := zapcore.NewConsoleEncoder(zapcore.EncoderConfig{
		TimeKey:    "time",
		LevelKey:   "level",
		MessageKey: "msg",
		EncodeTime: func(t time.Time, e zapcore.PrimitiveArrayEncoder) {
			e.AppendString("[" + t.Format("2006-01-02 15:04:05,000") + ":")
		},
		EncodeLevel: func(l zapcore.Level, e zapcore.PrimitiveArrayEncoder) {
			name := map[zapcore.Level]string{zapcore.WarnLevel: "WARNING", zapcore.DPanicLevel: "CRITICAL"}[l]
			if name == "" {
				name = l.CapitalString()
			}
			e.AppendString(name + "/MainProcess]")
		},
		EncodeDuration:   zapcore.StringDurationEncoder,
		ConsoleSeparator: " ",
	})
	core := zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(out)), lvl)
	return zap.New(core), nil
}
