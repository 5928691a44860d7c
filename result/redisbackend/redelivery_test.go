package redisbackend_test

import (
	"testing"
	"time"

	"github.com/gworker/gworker/internal/testing/testenv"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/result/redisbackend"
)

var _ result.RedeliveryCounter = (*redisbackend.Backend)(nil)

func TestCountRedelivery(t *testing.T) {
	bd := setup(t, redisbackend.Options{Expires: time.Hour})
	key := testenv.UUID() + ".0"
	bd.cleanup(t, "gworker-redeliveries-"+key)
	ctx := testCtx(t)
	for want := int64(1); want <= 3; want++ {
		n, err := bd.b.CountRedelivery(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if n != want {
			t.Fatalf("count %d, want %d", n, want)
		}
	}
	ttl, err := bd.client.TTL(ctx, "gworker-redeliveries-"+key).Result()
	if err != nil {
		t.Fatal(err)
	}
	if ttl <= 0 || ttl > time.Hour {
		t.Fatalf("counter TTL %v, want the result expiry (1h)", ttl)
	}
}
