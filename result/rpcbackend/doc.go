// Package rpcbackend is Celery's rpc:// result backend: results travel as
// AMQP messages to the sending client's reply queue instead of being
// stored.
//
// The worker side (Store) publishes each state change of a task to the
// default exchange "" with routing key = the task message's reply_to and
// correlation_id = its correlation id (or task id), delivery_mode 1, as
// {"task_id", "status", "result", "traceback", "children"} JSON; nothing is
// sent when the task had no reply_to. Python clients using
// backend='rpc://' read these messages.
//
// The client side declares the reply queue named after the client id
// (non-durable, auto-delete, x-expires = result_expires, exactly as Celery
// declares it), consumes it without acks and keeps the latest state of each
// task id. Get returns that state, PENDING for ids this client never heard
// of (as in Celery, a result sent to another client stays PENDING here
// forever), and WaitReady lets AsyncResult.Get and ResultSet.JoinNative wait
// without polling.
//
// Like Celery's, the RPC backend supports neither chords nor
// GroupResult save/restore: those return ErrNotSupported.
package rpcbackend
