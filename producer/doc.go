// Package producer sends Celery task messages from Go.
//
// A Producer builds protocol-v2 messages that match, field for field, what
// Celery 5.2.6's apply_async publishes: the 16 task headers in Celery's
// order, the [args, kwargs, embed] body, correlation_id, reply_to, priority,
// delivery_mode 2 and, when an expiry is given, the AMQP expiration
// property. Python workers and tools cannot tell the messages apart from
// ones sent by a Python client.
//
// The "lang" header is written as "py", as Celery writes it. Workers ignore
// the header, but tools that display it (Flower, celery events) then show
// Go-sent tasks exactly like Python-sent ones; the "origin" header
// (gen<pid>@<host>) still names the sending process.
//
// Routing follows Celery's defaults: a task goes to the queue given with
// Queue, or Options.DefaultQueue ("celery"), through the default exchange ""
// with the queue name as routing key. When the Publisher also implements
// Declarer, the producer declares each queue once (kombu-compatible: durable
// direct exchange and durable queue of the same name, bound with that name)
// before its first publish, as kombu does.
//
// The producer talks to the broker only through the small Publisher
// interface, so any transport (or a test recorder) can carry the messages.
package producer
