// Package amqptransport is the RabbitMQ transport of gworker, built on
// github.com/rabbitmq/amqp091-go: it declares queues exactly as kombu does,
// consumes task messages with manual acknowledgements and publishes with
// publisher confirms, and it keeps doing so across connection and channel
// failures.
//
// # Connections
//
// Dial opens the consuming connection (its first connection must succeed
// before ctx ends); the first Publish opens a second connection for
// publishing, so that a broker blocking publishers under a resource alarm
// cannot stall acknowledgements. A lost connection is re-established in the
// background with capped, jittered exponential backoff (Config.ReconnectMin,
// Config.ReconnectMax). amqp091-go's own experimental recovery
// (amqp.Config.Recovery) is not used: it replays acknowledgements of old
// delivery tags on the new channel, where they settle other messages.
//
// # Consuming and acknowledging
//
// Broker.NewConsumer returns a Consumer whose Deliveries channel stays the same
// across reconnections. After any failure (connection loss, or a channel
// error such as the PRECONDITION_FAILED of a consumer_timeout, which kills
// a Celery 5.2.6 worker), the consumer opens a new channel, re-applies the
// prefetch, declares and consumes its queues again, and logs at WARN.
//
// Every Delivery remembers the channel it came from. Ack and Reject on a
// delivery whose channel has died return ErrStaleDelivery and send nothing:
// the broker requeued the message when the channel died and will deliver it
// again, and a delivery tag from an old channel would name a different
// message on the new one. A second Ack or Reject returns ErrAlreadySettled
// without sending anything (RabbitMQ answers a double ack by closing the
// channel, which would requeue every other unacknowledged message).
//
// Warm shutdown is Consumer.Cancel (basic.cancel; the messages already
// received stay ackable and are still handed over, then Deliveries is
// closed) followed by Consumer.Close (the channel closes and the broker
// requeues whatever is still unacknowledged).
//
// Prefetch follows Celery: ConsumerConfig.GlobalQoS true gives
// basic.qos(global=true), and SetPrefetch/AddPrefetch change it on the live
// channel (as Celery's qos.increment_eventually does for ETA messages) and
// after every reconnection.
//
// # Queue types and quorum queues
//
// Queues that already exist are consumed whatever their type and
// arguments: a declaration the broker refuses with PRECONDITION_FAILED
// (a quorum queue declared by a Python client with
// queue_arguments={'x-queue-type': 'quorum'}, a dead-letter exchange, a
// delivery limit, ...) is replaced by a passive one, the queue is bound as
// configured, and a WARN line says what the broker has. Queues the
// transport creates are classic unless Config.DefaultQueueType is quorum
// (Celery 5.5's task_default_queue_type), in which case they carry
// x-queue-type=quorum; Broker.TaskQueue and Broker.DeclareTaskQueue, which a
// producer uses, follow the same setting.
//
// Quorum queues refuse global QoS (RabbitMQ closes the whole connection
// with 540 NOT_IMPLEMENTED), so a consumer that finds one among its queues
// (or an existing queue of unknown type) uses per-consumer QoS, as Celery
// 5.5's worker_detect_quorum_queues, and moves its prefetch window by
// restarting its consumers on the same channel (ConsumerConfig.GlobalQoS).
// Differences to keep in mind with quorum queues:
//
//   - they have no per-message priority: x-max-priority is refused and a
//     message's priority property is ignored;
//   - the per-consumer prefetch count is capped at QuorumPrefetchMax (2000);
//   - every redelivery carries the x-delivery-count header (absent on the
//     first delivery), which RabbitMQ increments whenever a message is
//     returned to the queue, also when prefetched messages are requeued by
//     a warm shutdown or a lost connection; a delivery-limit policy makes
//     the broker drop or dead-letter a message past that count;
//   - they are always durable, and replicated on a cluster (three nodes or
//     more), which is what makes them survive the loss of a node.
//
// # Native delayed delivery
//
// Celery 5.5 does not send a countdown or ETA task to a quorum queue
// directly: it publishes it to celery_delayed_27 with a routing key that
// spells the countdown in 28 binary words ("0.0.…1.0.1.<routing key>"),
// and the broker holds it in up to 28 levels, each a topic exchange and a
// queue named celery_delayed_<level> whose messages expire after 2^level
// seconds into the level below, until celery_delayed_delivery routes it,
// through the queue's own exchange, to the queue. That topology is
// declared, and the queues bound to it, by the workers
// (celery/worker/consumer/delayed_delivery.py); without it such messages
// are unroutable and lost.
//
// A task consumer (Broker.Consume, ConsumerConfig.DelayedDelivery) that
// finds a quorum queue among its queues does what Celery 5.5's worker does:
// it declares the 28 levels and celery_delayed_delivery with exactly
// kombu's arguments (the levels' type is Config.DelayedDeliveryQueueType,
// Celery's broker_native_delayed_delivery_queue_type), and binds the
// exchange of each of its queues to celery_delayed_delivery, and the queue
// to its exchange, with "#.<routing key>". Only topic and fanout exchanges
// can be bound; a queue whose exchange is direct (Config.DefaultExchangeType
// is Celery's task_default_exchange_type, direct unless set) is skipped
// with a warning, and its delayed tasks wait in the worker, as with Celery.
// This happens over the consumer's connection before NewConsumer returns
// and after every reconnect, and on every other URL of the failover list
// in the background. Every step is idempotent, and a Celery 5.5 worker and
// gworker declare the same things in either order. A set-up the broker
// refuses (a permission, a policy) is logged and retried in the
// background, with growing delays up to a minute, and never stops
// consumption.
//
// Publishing a task with an eta (PublishDelayed, which the producer uses)
// follows Celery 5.5's route when the message is due in a second or more
// and goes to a quorum queue whose exchange is a topic or fanout exchange:
// the publishing connection's node gets the topology, and the queue's
// binding, first. Countdowns are counted in whole seconds, truncated, so a
// message arrives up to a second early and the worker holds it until its
// eta; a countdown under a second is not delayed by the broker at all. A
// message delivered through the topology and published again (a retry,
// which Celery sends back to the exchange and routing key it came with)
// loses its old prefix before it gets a new one, so its key stays short
// however often it is retried, and goes straight to celery_delayed_delivery
// when it is due at once. Publishing never sends the x-death headers
// (nor x-first-death-* and x-last-death-*) a delivered message carries:
// with them RabbitMQ's dead-letter cycle detection drops a message that
// passes the same level twice.
//
// # consumer_timeout and long tasks
//
// RabbitMQ closes a channel whose delivery stays unacknowledged longer than
// consumer_timeout (30 minutes by default) with PRECONDITION_FAILED and
// requeues its messages. The consumer reopens the channel and goes on
// (this ends a Celery 5.2.6 worker), and the worker does not start the
// redelivered copy of a task that is still running: it settles it with the
// outcome of the run (package worker).
//
// To let acks_late tasks run longer than the timeout without their channel
// being closed, raise the timeout (never disable it: it is what frees the
// messages of a consumer that hangs). Per queue, from RabbitMQ 3.12, with
// the queue argument x-consumer-timeout (milliseconds) when the queue is
// created, or with a policy:
//
//	rabbitmqctl set_policy long-tasks '^long\.' '{"consumer-timeout":7200000}' --apply-to queues
//
// For the whole node (every version), in rabbitmq.conf or, for channels
// opened afterwards, at run time:
//
//	consumer_timeout = 7200000
//	rabbitmqctl eval 'application:set_env(rabbit, consumer_timeout, 7200000).'
//
// # Publishing
//
// Broker.Publish maps a protocol.RawMessage onto basic.publish and waits
// for the publisher confirm of that message on a shared confirm-mode
// channel; it is safe and fast for concurrent use. A nack gives ErrNacked,
// a mandatory message nobody can route gives a *ReturnError. When the
// connection breaks before the confirm, Publish publishes again on the new
// connection until ctx ends, so a message can arrive twice (at least once).
//
// # Header types
//
// Received header tables are converted to the value types of package
// protocol: every AMQP integer width becomes int64, float32 becomes
// float64, a decimal becomes its exact decimal string, nested tables become
// map[string]any and arrays []any; time.Time and []byte are kept.
//
// Published headers are converted by HeadersToAMQP so that py-amqp reads
// back the value that was meant: integers in the int32 range as AMQP 'I',
// larger positive ones as int64 (amqp091-go writes 'l', which py-amqp reads
// as unsigned 64-bit, the same value for positive numbers). Negative
// integers below the int32 range have no safe encoding from amqp091-go
// (py-amqp would read 'l' as a huge unsigned number): they are sent as
// float64 when exactly representable (|v| ≤ 2^53) and as a decimal string
// otherwise, like integers beyond int64. int8, int16, uint8 and []byte are
// never written: py-amqp reads 's' as a short string and swaps 'b'/'B'.
//
// Properties: RawMessage.HasPriority false sends no priority; amqp091-go
// also sends none for priority 0, and on delivery cannot tell an absent
// priority from 0. Deliveries report HasPriority true, priority 0 when
// absent: kombu's producers always send one (0 by default), so Celery's
// worker reports 0 for them, and so does gworker.
//
// # NOTES: the 'L' header trap and the quarantine sweep
//
// py-amqp (used by every Python Celery client) writes any int header
// outside −2147483647..2147483647 with the AMQP field type 'L' (signed
// 64-bit). amqp091-go has no decoder for 'L': reading such a message fails
// with "invalid field or value inside of a frame" and the whole connection
// is closed (code 501/502). The message was not acknowledged, so RabbitMQ
// requeues it and delivers it again on the next connection: a crash loop
// in which one message from Python (for example
// apply_async(headers={"big": 2**40})) stops all consumption.
//
// The transport recognizes a connection closed on a frame it could not
// parse and, before consuming again, runs a quarantine sweep: a minimal
// AMQP 0-9-1 client of its own (package internal/rawamqp: TCP, PLAIN
// authentication, a field-table decoder that understands every type tag,
// 'L' included) basic.gets the consumed queues without acknowledging, up
// to Config.QuarantineScanLimit messages per queue. Each message whose
// headers amqp091-go cannot read is republished on the sweep connection,
// with a publisher confirm, to the default exchange with the queue name as
// routing key: a copy with every property of the original (message-id,
// timestamp, type, user-id, app-id, priority, expiration, ...) and every
// header with its field type, except 'L', which becomes 'l' when
// non-negative (the 2**40 arrives as int64 1099511627776), else a float64
// when exact, else a decimal string (py-amqp reads 'l' as unsigned), and
// 'U', which becomes 's'. Only then is the original acknowledged on the
// sweep connection; every other message is
// returned to the queue when the sweep channel closes. A republished
// message goes to the back of its queue and loses its redelivered flag and
// original exchange. A message that even the sweep cannot parse is rejected
// without requeue (dead-lettered if the queue has a dead-letter exchange)
// and logged at ERROR, since it could only loop forever.
package amqptransport
