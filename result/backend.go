package result

import "context"

// GroupStore is implemented by backends that can save GroupResults
// (celery-taskset-meta-<gid> on Redis).
type GroupStore interface {
	// SaveGroup stores the group's result tuple (see GroupResult.AsTuple).
	SaveGroup(ctx context.Context, groupID string, tuple any) error
	// RestoreGroup returns the saved tuple, or ErrGroupNotFound.
	RestoreGroup(ctx context.Context, groupID string) (any, error)
	// DeleteGroup removes the saved group.
	DeleteGroup(ctx context.Context, groupID string) error
}

// NativeJoiner is implemented by backends that can wait for many results at
// once without polling (Celery's supports_native_join).
type NativeJoiner interface {
	// WaitReady calls fn exactly once per distinct id, in any order, with
	// the meta of that task when it is ready (SUCCESS, FAILURE, REVOKED).
	// It starts listening before it reads stored values, so no result is
	// missed. It returns nil once every id was reported, or the context's
	// error. fn is called from one goroutine at a time.
	WaitReady(ctx context.Context, ids []string, fn func(*Meta)) error
}

// ChordPart is one finished chord header task, as recorded by the backend.
type ChordPart struct {
	TaskID string
	Status State
	// Result is the return value, or the exception dict for FAILURE and
	// REVOKED.
	Result any
}

// ChordBackend is implemented by backends that count chord header parts
// atomically (Celery's Redis on_chord_part_return) and on which a client
// starts a chord by its size.
type ChordBackend interface {
	// SetChordSize records how many header parts the chord of groupID
	// has. Clients call it before sending the last header task.
	SetChordSize(ctx context.Context, groupID string, size int) error
	ChordCounter
}

// ChordCounter is implemented by backends that count finished chord
// header parts for the worker: every ChordBackend, and backends whose
// chords are started by the client in a way of their own
// (django-celery-results' ChordCounter rows).
type ChordCounter interface {
	// AddChordPart records a finished header part. groupIndex is the
	// part's position in the header (nil when unknown). When this part
	// completes the chord it returns complete=true with every part in
	// header order, and removes the chord's bookkeeping keys.
	AddChordPart(ctx context.Context, groupID string, groupIndex *int, part ChordPart) (complete bool, parts []ChordPart, err error)
}

// ChordExtender is implemented by backends whose chords can grow while
// their header runs (Celery's add_to_chord, Redis only): AddToChord
// counts one more header part to wait for (<gid>.t += 1).
type ChordExtender interface {
	AddToChord(ctx context.Context, groupID string) error
}

// ChordPoller is implemented by backends that count no chord parts and
// whose chords are completed by celery.chord_unlock, which a client sends
// with the header's results and which polls them (Celery's
// fallback_chord_unlock, used with its database backend).
type ChordPoller interface {
	// PollsChords marks the backend; it does nothing.
	PollsChords()
}

// RedeliveryCounter is implemented by backends that keep a counter per
// task message, for the worker's cap on redeliveries on brokers that do
// not count them (RabbitMQ classic queues).
type RedeliveryCounter interface {
	// CountRedelivery adds one to the counter of key and returns the new
	// value. The counter is forgotten after the backend's result expiry.
	CountRedelivery(ctx context.Context, key string) (int64, error)
}
