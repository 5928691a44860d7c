package rpcbackend_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gworker/gworker/amqptransport"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// amqpURL is the broker the tests use (AMQP_URL, default the local
// RabbitMQ with the guest account).
func amqpURL() string {
	if u := os.Getenv("AMQP_URL"); u != "" {
		return u
	}
	return "amqp://guest:guest@127.0.0.1:5672/"
}

// pythonBin is the interpreter with Celery installed (PYTHON, default
// /usr/bin/python3).
func pythonBin() string {
	if p := os.Getenv("PYTHON"); p != "" {
		return p
	}
	return "/usr/bin/python3"
}

func dial(t *testing.T) *amqptransport.Broker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := amqptransport.Dial(ctx, amqptransport.Config{URL: amqpURL()})
	if err != nil {
		t.Fatalf("RabbitMQ is required at %s (set AMQP_URL): %v", amqptransport.RedactURL(amqpURL()), err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func suffix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
