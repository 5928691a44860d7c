// Package gworkertest runs gworker tasks with no server: an in-memory
// broker (RabbitMQ's semantics for queues, exchanges, prefetch,
// acknowledgements, rejection and redelivery) and an in-memory result
// backend (the same JSON as Celery's Redis backend, chords and native
// joins included), wired to a real worker and producer.
//
// Three levels, from the smallest:
//
//   - RunTask and RunFunc run one task once as the worker would (argument
//     binding, time limits, panics, retries, Python exceptions, the result
//     read back as Python reads it) and report how it ended.
//   - Env is a worker, a producer and a backend on the in-memory broker:
//     send tasks, chains, groups and chords and wait for their results.
//     NewEnv builds one for a test and stops it when the test ends.
//   - Broker and Backend can be used alone: Broker is a worker.Broker, a
//     producer.Publisher and a producer.Declarer; Backend is a
//     result.Backend, result.GroupStore, result.NativeJoiner and
//     result.ChordBackend. Broker.DeadLetters keeps the messages rejected
//     without requeue, for tests to assert on.
//
// A test of a task and what follows it:
//
//	func TestArea(t *testing.T) {
//		ctx := context.Background()
//		env := gworkertest.New(t) // stopped when the test ends
//		env.Registry.MustRegister("tasks.area", area, worker.Params("w", "h"))
//		if err := env.Start(ctx); err != nil {
//			t.Fatal(err)
//		}
//		r, err := env.SendTask(ctx, "tasks.area", []any{2.0, 3.0}, nil)
//		if err != nil {
//			t.Fatal(err)
//		}
//		m, err := env.Wait(ctx, r.ID())
//		if err != nil || m.Status != result.Success {
//			t.Fatalf("%+v %v", m, err)
//		}
//		// m.Result is what Python reads: map[string]any{"area": 6.0, "unit": "cm2"}
//	}
//
// Values stored in the backend are encoded to JSON and decoded back on
// every read, so tests see Python's types (int64, float64, []any,
// map[string]any), not the Go values a task returned.
package gworkertest
