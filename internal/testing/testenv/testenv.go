// Package testenv holds what the tests of several gworker packages share:
// where the test servers and Python Celery are, unique names for queues and
// keys, cleanup of the queues, exchanges and Redis keys a test creates, and
// loading the task messages captured from Celery 5.2.6.
//
// The tests fail, and never skip, when a server is unreachable. Where the
// servers and Python are comes from the environment:
//
//	AMQP_URL            RabbitMQ (alias GWORKER_TEST_BROKER);
//	                    default amqp://guest:guest@127.0.0.1:5672/
//	GWORKER_TEST_REDIS  Redis, as a redis:// URL;
//	                    default redis://127.0.0.1:6379/0
//	CELERY_PYTHON       the interpreter with Celery 5.2 (alias PYTHON);
//	                    default /usr/bin/python3
//
// The aliases are names some packages' tests read before this package
// existed; when both are set, the first name wins.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"
)

// getenv returns the first of names that is set and not empty, or def.
func getenv(def string, names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return def
}

// AMQPURL is the RabbitMQ the tests use: $AMQP_URL, $GWORKER_TEST_BROKER,
// or the local server with the guest account.
func AMQPURL() string {
	return getenv("amqp://guest:guest@127.0.0.1:5672/", "AMQP_URL", "GWORKER_TEST_BROKER")
}

// CeleryBrokerURL is AMQPURL spelled the way kombu reads it: kombu takes
// the path after the host's slash as the vhost, so the default vhost "/"
// needs a second slash.
func CeleryBrokerURL() string {
	u := AMQPURL()
	if strings.HasSuffix(u, ":5672/") {
		return u + "/"
	}
	return u
}

// RedisURL is the Redis the tests use: $GWORKER_TEST_REDIS, or database 0
// of the local server.
func RedisURL() string {
	return getenv("redis://127.0.0.1:6379/0", "GWORKER_TEST_REDIS")
}

// Python is the interpreter with Celery 5.2 installed: $CELERY_PYTHON,
// $PYTHON, or the system python3 (the python3 first on the PATH may lack
// Celery).
func Python() string {
	return getenv("/usr/bin/python3", "CELERY_PYTHON", "PYTHON")
}

// RedisOptions returns the client options for RedisURL, for tests that
// need to adjust them before connecting.
func RedisOptions(t testing.TB) *redis.Options {
	t.Helper()
	opts, err := redis.ParseURL(RedisURL())
	if err != nil {
		t.Fatalf("GWORKER_TEST_REDIS: %v", err)
	}
	return opts
}

// Redis connects to the test Redis and closes the client when the test
// ends; it fails the test (never skips) when the server is unreachable.
func Redis(t testing.TB) *redis.Client {
	t.Helper()
	opts := RedisOptions(t)
	c := redis.NewClient(opts)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		c.Close()
		t.Fatalf("Redis at %s is required for this test and is unreachable: %v", opts.Addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// CleanupKeys deletes keys from c when the test ends.
func CleanupKeys(t testing.TB, c *redis.Client, keys ...string) {
	t.Cleanup(func() { c.Del(context.Background(), keys...) })
}

// Suffix returns 12 random hex digits, to make queue, key and worker
// names unique to one test run.
func Suffix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// UUID returns a random uuid4 string, as Celery spells task ids.
func UUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// PyQuote returns s as a single-quoted Python string literal.
func PyQuote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// DeleteTaskQueue removes the queue name and the exchange of the same name,
// which kombu and a Celery worker declare for a task queue. Failures are
// reported as test errors.
func DeleteTaskQueue(t testing.TB, name string) {
	t.Helper()
	conn, err := amqp.Dial(AMQPURL())
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	defer ch.Close()
	if _, err := ch.QueueDelete(name, false, false, false); err != nil {
		t.Errorf("cleanup queue %s: %v", name, err)
	}
	if err := ch.ExchangeDelete(name, false, false); err != nil {
		t.Errorf("cleanup exchange %s: %v", name, err)
	}
}

// ReadTestdata returns the contents of testdata/name in the package under
// test.
func ReadTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Vector is a task message captured from Celery 5.2.6: testdata/NAME.json
// holds its routing, properties and decoded headers and body, and
// testdata/NAME.body.bin the body's bytes as sent.
type Vector struct {
	DeliveryInfo struct {
		Exchange   string `json:"exchange"`
		RoutingKey string `json:"routing_key"`
	} `json:"delivery_info"`
	Properties  map[string]any  `json:"properties"`
	HeadersJSON json.RawMessage `json:"headers"`
	BodyJSON    json.RawMessage `json:"body_decoded"`
	Body        []byte          `json:"-"`
}

// LoadVector reads the captured message name from the package's testdata.
func LoadVector(t testing.TB, name string) Vector {
	t.Helper()
	var v Vector
	if err := json.Unmarshal(ReadTestdata(t, name+".json"), &v); err != nil {
		t.Fatal(err)
	}
	v.Body = ReadTestdata(t, name+".body.bin")
	return v
}
