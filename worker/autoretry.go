package worker

import (
	"math/rand/v2"
	"time"
)

// AutoRetryPolicy retries a task automatically on matching errors, as
// Celery's autoretry_for with retry_backoff.
type AutoRetryPolicy struct {
	// On reports whether err should be retried; nil retries every error.
	On func(err error) bool
	// MaxRetries overrides the task's max_retries.
	MaxRetries *int
	// Backoff is the first delay; each retry doubles it (Celery's
	// retry_backoff). Zero retries at once.
	Backoff time.Duration
	// MaxBackoff caps the delay (Celery's retry_backoff_max, 600 s).
	MaxBackoff time.Duration
	// Jitter draws the delay uniformly from [0, delay] (retry_jitter).
	Jitter bool
}

func (p *AutoRetryPolicy) matches(err error) bool { return p.On == nil || p.On(err) }

func (p *AutoRetryPolicy) countdown(retries int) time.Duration {
	if p.Backoff <= 0 {
		return 0
	}
	max := p.MaxBackoff
	if max <= 0 {
		max = 600 * time.Second
	}
	d := p.Backoff
	for i := 0; i < retries && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	if p.Jitter {
		d = time.Duration(rand.Int64N(int64(d) + 1))
	}
	return d
}
