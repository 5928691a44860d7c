package amqptransport

import (
	"context"

	"go.uber.org/zap"
)

func (b *Broker) sweep(ctx context.Context, queues []Queue, log *zap.Logger) {}
