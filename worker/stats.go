package worker

import "sync/atomic"

// Stats are counters of what the worker did.
type Stats struct {
	Received, Succeeded, Failed, Retried, Revoked, Rejected, Invalid int64
	// PendingResults is how many results wait in memory for the result
	// store to come back (see Config.MaxPendingResults).
	PendingResults int64
	// StoreRetries is how many result writes were tried again after the
	// result store failed.
	StoreRetries int64
}

// counters count what happened to the messages the worker received.
type counters struct {
	received, succeeded, failed, retried, revoked, rejected, invalid atomic.Int64
}

// stats returns the counters with the given gauges of other parts.
func (c *counters) stats(pendingResults, storeRetries int64) Stats {
	return Stats{
		Received:  c.received.Load(),
		Succeeded: c.succeeded.Load(),
		Failed:    c.failed.Load(),
		Retried:   c.retried.Load(),
		Revoked:   c.revoked.Load(),
		Rejected:  c.rejected.Load(),
		Invalid:   c.invalid.Load(),

		PendingResults: pendingResults,
		StoreRetries:   storeRetries,
	}
}
