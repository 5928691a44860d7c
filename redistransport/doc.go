// Package redistransport is kombu's Redis transport (Celery's redis://
// broker) for gworker, built on github.com/redis/go-redis/v9. It reads and
// writes exactly the keys kombu 5.2.4 does, so gworker and Python Celery
// workers and clients share queues.
//
// # Keys
//
// A queue is a list named after it, plus one list per priority step above
// 0 named queue + sep + step ("celery\x06\x169"); priority 0 is served
// first. Messages are kombu's JSON envelopes (body in base64, a uuid4
// delivery_tag in the properties), pushed with LPUSH and taken from the
// right. Exchanges are sets "_kombu.binding.<exchange>" of
// "routing_key SEP pattern SEP queue" (direct routing). global_keyprefix
// prefixes every key.
//
// # Acknowledgements
//
// As kombu's ack emulation: a message taken is recorded in the hash
// "unacked" (tag -> [envelope, exchange, routing_key]) and the sorted set
// "unacked_index" (tag -> time taken); Ack removes both. Unlike kombu, the
// pop and the record happen in one Lua script, so a consumer that dies in
// between cannot lose the message, and several messages are taken per
// round trip when the prefetch allows. When every queue is empty the
// consumer blocks in BRPOP over all lists in kombu's order (every queue's
// step 0, then step 3, ...), with the round_robin, sorted or priority queue
// order of queue_order_strategy.
//
// Every RestoreInterval, under the lock "unacked_mutex", a consumer moves
// messages whose index score is older than the visibility timeout back to
// the front of their queue, flagged redelivered: their consumer is
// presumed dead. A live consumer refreshes the score of every message it
// holds four times per visibility timeout, so its messages are never
// restored, however long a task runs or an ETA waits (Celery's kombu#337:
// an ETA past the visibility timeout runs several times).
//
// Reject with requeue puts the message at the back of its queue (kombu).
// Consumer.Cancel puts the messages taken but not handed over back at the
// head; after it Reject with requeue does the same, and Consumer.Close puts
// every message still held back at the head and empties its unacked
// entries, as a Celery worker does at warm shutdown.
//
// A message that is not a kombu envelope is logged and moved to the list
// DeadLetterKey; the consumer goes on. Connection failures are retried
// with jittered exponential backoff between ReconnectMin and ReconnectMax.
//
// # Fanout
//
// Fanout exchanges (events, the pidbox broadcast) are Redis pub/sub, as in
// kombu: Broker.PublishFanout publishes the envelope on
// "/<db>.<exchange>/<routing key>" and Broker.Subscribe PSUBSCRIBEs to the
// channels of its binding keys. Nothing is kept for absent subscribers.
//
// # URLs
//
// redis://[user:password@]host[:port][/db], rediss:// for TLS, and
// sentinel://host:26379;sentinel://host2:26379 with the master_name
// transport option for Redis Sentinel.
package redistransport
