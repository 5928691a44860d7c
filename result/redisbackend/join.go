package redisbackend

import (
	"context"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/gworker/gworker/result"
)

// mgetChunk bounds the keys of one MGET.
const mgetChunk = 1000

// WaitReady waits for the tasks ids to be ready and calls fn once per
// distinct id with its meta, as Celery's join_native does on Redis: it
// SUBSCRIBEs to every result key (one command on one connection) and waits
// for the subscription to be confirmed, then reads the stored values with
// MGET, then takes the rest from the messages published by the writers. No
// polling is involved, so it returns as soon as the last result is
// published. If the subscription connection is re-established, stored
// values are read again so that nothing published meanwhile is missed.
//
// A stored value that is not a valid meta ends the wait with an error
// wrapping result.ErrBadMeta.
func (b *Backend) WaitReady(ctx context.Context, ids []string, fn func(*result.Meta)) error {
	if fn == nil {
		fn = func(*result.Meta) {}
	}
	pending := make(map[string]string, len(ids)) // key -> id
	keys := make([]string, 0, len(ids))
	for _, id := range ids {
		k := b.TaskKey(id)
		if _, dup := pending[k]; dup {
			continue
		}
		pending[k] = id
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	ps := b.client.Subscribe(ctx)
	defer ps.Close()
	if err := ps.Subscribe(ctx, keys...); err != nil {
		return fmt.Errorf("redisbackend: subscribe: %w", err)
	}
	ch := ps.ChannelWithSubscriptions(redis.WithChannelSize(len(keys) + 64))

	// deliver handles a value read or received for key.
	deliver := func(key string, payload string) error {
		id, ok := pending[key]
		if !ok {
			return nil
		}
		m, err := decode(id, []byte(payload))
		if err != nil {
			return err
		}
		if !m.Status.Ready() {
			return nil
		}
		m.TaskID = id // the key decides, whatever the value says
		delete(pending, key)
		fn(m)
		return nil
	}
	mget := func() error {
		rest := make([]string, 0, len(pending))
		for _, k := range keys {
			if _, ok := pending[k]; ok {
				rest = append(rest, k)
			}
		}
		for len(rest) > 0 {
			n := min(len(rest), mgetChunk)
			vals, err := b.client.MGet(ctx, rest[:n]...).Result()
			if err != nil {
				return fmt.Errorf("redisbackend: mget: %w", err)
			}
			for i, v := range vals {
				if s, ok := v.(string); ok {
					if err := deliver(rest[i], s); err != nil {
						return err
					}
				}
			}
			rest = rest[n:]
		}
		return nil
	}

	subscribed := make(map[string]bool, len(keys))
	initial := true
	resubscribed := 0
	for len(pending) > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case msg, ok := <-ch:
			if !ok {
				return fmt.Errorf("redisbackend: subscription closed")
			}
			switch x := msg.(type) {
			case *redis.Message:
				if err := deliver(x.Channel, x.Payload); err != nil {
					return err
				}
			case *redis.Subscription:
				if !strings.EqualFold(x.Kind, "subscribe") {
					continue
				}
				if initial {
					subscribed[x.Channel] = true
					if len(subscribed) == len(keys) {
						initial = false
						if err := mget(); err != nil {
							return err
						}
					}
					continue
				}
				// Confirmations after the initial ones mean the connection
				// was re-established: read the values again once all
				// channels are back.
				resubscribed++
				if resubscribed%len(keys) != 0 {
					continue
				}
				b.log.Debug("result subscription re-established", zap.Int("pending", len(pending)))
				if err := mget(); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
