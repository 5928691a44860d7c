package rpcbackend_test

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gworker/gworker/amqptransport"
	"github.com/gworker/gworker/internal/testing/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func dial(t *testing.T) *amqptransport.Broker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := amqptransport.Dial(ctx, amqptransport.Config{URL: testenv.AMQPURL()})
	if err != nil {
		t.Fatalf("RabbitMQ is required at %s (set AMQP_URL): %v", amqptransport.RedactURL(testenv.AMQPURL()), err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}
