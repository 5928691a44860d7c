package producer_test

import (
	"context"
	"sync"

	"github.com/gworker/gworker/protocol"
)

type published struct {
	exchange, routingKey string
	msg                  *protocol.RawMessage
}

// recorder captures what the producer hands to its transport.
type recorder struct {
	mu       sync.Mutex
	msgs     []published
	declared []string
}

func (r *recorder) Publish(_ context.Context, exchange, routingKey string, msg *protocol.RawMessage) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, published{exchange, routingKey, msg})
	return nil
}

func (r *recorder) DeclareTaskQueue(_ context.Context, name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.declared = append(r.declared, name)
	return nil
}
