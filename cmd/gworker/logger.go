package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// buildLogger returns a zap logger writing Celery-looking lines to out:
//
//	[2026-01-02 03:04:05,678: INFO/MainProcess] Task tasks.add[...] received
func buildLogger(level string, out io.Writer) (*zap.Logger, error) {
	var lvl zapcore.Level
	switch strings.ToUpper(level) {
	case "DEBUG":
		lvl = zapcore.DebugLevel
	case "INFO", "":
		lvl = zapcore.InfoLevel
	case "WARNING", "WARN":
		lvl = zapcore.WarnLevel
	case "ERROR":
		lvl = zapcore.ErrorLevel
	case "CRITICAL", "FATAL":
		lvl = zapcore.DPanicLevel
	default:
		return nil, fmt.Errorf("unknown log level %q (DEBUG, INFO, WARNING, ERROR, CRITICAL)", level)
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
		ConsoleSeparator: " ",
	})
	core := zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(out)), lvl)
	return zap.New(core), nil
}
