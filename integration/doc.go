// Package integration holds gworker's cross-process tests: a gworker worker
// process talks to real Python Celery 5.2.6 clients and workers through a
// real RabbitMQ broker and a real Redis result backend.
//
// The tests need RabbitMQ on 127.0.0.1:5672 (guest/guest, with rabbitmqctl
// on the PATH), Redis on 127.0.0.1:6379, and Python 3 with celery, redis and
// msgpack at /usr/bin/python3 (or the interpreter named by $CELERY_PYTHON).
// The .ci/run script sets all of that up. Each test run creates its own
// RabbitMQ virtual host and deletes it afterwards, and deletes the Redis
// keys of the tasks it sent.
//
// Run them with the rest of the module:
//
//	go test -race -count=1 -timeout 15m ./...
package integration
