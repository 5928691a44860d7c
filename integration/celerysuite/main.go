// Command celerysuite is the worker Celery's own integration suite runs
// against: every task of the suite's t/integration/tasks.py (Celery 5.2.6
// and 5.5.3, the union of both) registered under its Python name, each
// doing in Go what the Python body does, on gworker's App with the same
// command line as cmd/gworker:
//
//	celerysuite worker -b amqp://guest:guest@localhost:5672/VHOST --result-backend redis://localhost:6379/N -n NAME -c 1
//
// Tasks that write Redis (redis_echo, redis_count, ...) use the server
// named by REDIS_HOST and REDIS_PORT, database 0, as the suite's
// get_redis_connection does. The bodies stay as plain as the Python ones:
// what makes the suite pass belongs in gworker itself. The suite's runner
// is the Go test beside this file.
package main

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gworker/gworker"
	"github.com/gworker/gworker/canvas"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/worker"
)

// mod is the module of the suite's tasks.
const mod = "t.integration.tasks"

func main() {
	app := gworker.New(gworker.Config{})
	s := &suite{app: app}
	if err := s.register(app); err != nil {
		fmt.Fprintln(os.Stderr, "celerysuite:", err)
		os.Exit(1)
	}
	app.Main()
}

// suite holds what the tasks share: the App (to send tasks from inside a
// task), the Redis client of get_redis_connection, and the attempt
// counter of the retry task (an attribute of the Python task object).
type suite struct {
	app *gworker.App

	once sync.Once
	rdb  *redis.Client

	mu      sync.Mutex
	attempt int
}

func (s *suite) redis() *redis.Client {
	s.once.Do(func() {
		host := os.Getenv("REDIS_HOST")
		if host == "" {
			host = "localhost"
		}
		port := os.Getenv("REDIS_PORT")
		if port == "" {
			port = "6379"
		}
		s.rdb = redis.NewClient(&redis.Options{Addr: net.JoinHostPort(host, port)})
	})
	return s.rdb
}

// sig is add.s(...) for a task of the suite's module.
func sig(name string, args ...any) *canvas.Signature { return canvas.Sig(mod+"."+name, args...) }

func si(name string, args ...any) *canvas.Signature { return canvas.Si(mod+"."+name, args...) }

func group(sigs ...*canvas.Signature) *canvas.Signature { return canvas.Group(sigs...).Signature() }

func chain(sigs ...*canvas.Signature) *canvas.Signature { return canvas.Chain(sigs...).Signature() }

func chord(header []*canvas.Signature, body *canvas.Signature) *canvas.Signature {
	return canvas.Chord(header, body).Signature()
}

// replace is Python's `return self.replace(sig)`.
func replace(s *canvas.Signature) error { return worker.Replace(s.Signature) }

// request is self.request.
func request(ctx context.Context) *worker.Request {
	if r, ok := worker.RequestFromContext(ctx); ok {
		return r
	}
	return &worker.Request{}
}

// apply is sig.apply_async() from inside a task.
func (s *suite) apply(ctx context.Context, c *canvas.Signature) (*result.AsyncResult, error) {
	p, err := s.app.Producer(ctx)
	if err != nil {
		return nil, err
	}
	return canvas.ApplyInTask(ctx, p, c)
}

// expected is the suite's ExpectedException.
func expected(args ...any) error {
	e := protocol.NewException("ExpectedException", args...)
	e.Module = mod
	return e
}

func (s *suite) register(app *gworker.App) error {
	r := app.Registry()
	var errs []error
	reg := func(name string, fn any, opts ...worker.Option) {
		errs = append(errs, r.Register(mod+"."+name, fn, opts...))
	}
	handle := func(name string, h worker.Handler, opts ...worker.Option) {
		errs = append(errs, r.Handle(name, h, opts...))
	}
	params := worker.Params
	def := worker.Default
	one := 1

	reg("identity", func(x any) any { return x }, params("x"))
	reg("add", func(x, y, z any) (any, error) {
		v, err := pyAdd(x, y)
		if err != nil || !truthy(z) {
			return v, err
		}
		return pyAdd(v, z)
	}, params("x", "y", "z"), def("z", nil))
	reg("mul", func(x, y int64) int64 { return x * y }, params("x", "y"))
	reg("write_to_file_and_return_int", func(fileName string, i any) (any, error) {
		f, err := os.OpenFile(fileName, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		_, err = fmt.Fprintf(f, "%s\n", protocol.Repr(i))
		return i, err
	}, params("file_name", "i"))
	reg("add_not_typed", pyAdd, params("x", "y"))
	reg("add_ignore_result", pyAdd, params("x", "y"), worker.WithOptions(worker.TaskOptions{IgnoreResult: true}))
	handle(mod+".raise_error", func(context.Context, []any, map[string]any) (any, error) {
		return nil, worker.PyError("ValueError", "deliberate error")
	})
	reg("chain_add", func(ctx context.Context, x, y any) error {
		_, err := s.apply(ctx, chain(sig("add", x, x), sig("add", y)))
		return err
	}, params("x", "y"))
	reg("chord_add", func(ctx context.Context, x, y any) error {
		_, err := s.apply(ctx, chord([]*canvas.Signature{sig("add", x, x)}, sig("add", y)))
		return err
	}, params("x", "y"))
	delayedSum := func(ctx context.Context, numbers []any, pause float64) (any, error) {
		select {
		case <-time.After(time.Duration(pause * float64(time.Second))):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return pySum(numbers)
	}
	reg("delayed_sum", delayedSum, params("numbers", "pause_time"), def("pause_time", int64(1)))
	reg("delayed_sum_with_soft_guard", func(ctx context.Context, numbers []any, pause float64) (any, error) {
		v, err := delayedSum(ctx, numbers, pause)
		if err != nil && ctx.Err() != nil {
			return int64(0), nil // except SoftTimeLimitExceeded: return 0
		}
		return v, err
	}, params("numbers", "pause_time"), def("pause_time", int64(1)))
	reg("tsum", pySum, params("nums"))
	reg("xsum", func(nums []any) (any, error) {
		flat := make([]any, 0, len(nums))
		for _, n := range nums {
			if l, ok := n.([]any); ok {
				v, err := pySum(l)
				if err != nil {
					return nil, err
				}
				n = v
			}
			flat = append(flat, n)
		}
		return pySum(flat)
	}, params("nums"))
	reg("add_replaced", func(x, y any) error { return replace(sig("add", x, y)) }, params("x", "y"))
	replaceWithChain := func(second *canvas.Signature, linkErr bool) worker.Handler {
		return func(ctx context.Context, args []any, kwargs map[string]any) (any, error) {
			link := sig("redis_echo")
			if msg, ok := kwargs["link_msg"]; ok && msg != nil {
				link = si("redis_echo", msg)
			}
			c := chain(sig("identity", args...), second)
			if linkErr {
				return nil, replace(c.LinkError(link))
			}
			return nil, replace(c.Link(link))
		}
	}
	handle(mod+".replace_with_chain", replaceWithChain(sig("identity"), false))
	handle(mod+".replace_with_chain_which_raises", replaceWithChain(sig("raise_error"), true))
	handle(mod+".replace_with_empty_chain", func(context.Context, []any, map[string]any) (any, error) {
		return nil, replace(chain())
	})
	reg("add_to_all", func(nums []any, val any) error {
		subtasks := make([]*canvas.Signature, len(nums))
		for i, n := range nums {
			subtasks[i] = sig("add", n, val)
		}
		return replace(group(subtasks...))
	}, params("nums", "val"))
	reg("add_to_all_to_chord", func(ctx context.Context, nums []any, val any) (int64, error) {
		for _, n := range nums {
			if err := s.addToChord(ctx, sig("add", n, val)); err != nil {
				return 0, err
			}
		}
		return 0, nil
	}, params("nums", "val"))
	reg("add_chord_to_chord", func(ctx context.Context, nums []any, val any) (int64, error) {
		subtasks := make([]*canvas.Signature, len(nums))
		for i, n := range nums {
			subtasks[i] = sig("add", n, val)
		}
		return 0, s.addToChord(ctx, chain(group(subtasks...), sig("tsum")))
	}, params("nums", "val"))
	reg("print_unicode", func(ctx context.Context, logMessage, printMessage string) {
		worker.LoggerFromContext(ctx).Warn(logMessage)
		fmt.Println(printMessage)
	}, params("log_message", "print_message"), def("log_message", "håå®ƒ valmuefrø"), def("print_message", "hiöäüß"))
	reg("return_exception", func(e any) []any { return []any{e, true} }, params("e"))
	handle(mod+".sleeping", func(ctx context.Context, args []any, kwargs map[string]any) (any, error) {
		if len(args) != 1 {
			return nil, worker.PyError("TypeError", fmt.Sprintf("sleeping() takes 1 positional argument but %d were given", len(args)))
		}
		d, err := seconds(args[0])
		if err != nil {
			return nil, err
		}
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return nil, nil
	})
	reg("ids", func(ctx context.Context, i any) []any {
		r := request(ctx)
		return []any{none(r.RootID), none(r.ParentID), i}
	}, params("i"))
	reg("collect_ids", func(ctx context.Context, res, i any) []any {
		r := request(ctx)
		return []any{res, []any{none(r.RootID), none(r.ParentID), i}}
	}, params("res", "i"))
	reg("retry", func(ctx context.Context, returnValue any) (any, error) {
		if truthy(returnValue) {
			s.mu.Lock()
			attempt := s.attempt
			if attempt >= 3 {
				s.attempt = 0
				s.mu.Unlock()
				return returnValue, nil
			}
			s.attempt++
			s.mu.Unlock()
			fmt.Println("attempt", attempt)
		}
		return nil, worker.Retry(expected(), worker.Countdown(5*time.Second))
	}, params("return_value"), def("return_value", nil),
		worker.WithOptions(worker.TaskOptions{DefaultRetryDelay: time.Second}))
	reg("retry_unpickleable", func(foo, bar any, retryKwargs map[string]any) error {
		exc := protocol.NewException("UnpickleableException", foo)
		exc.Module = mod
		var opts []worker.RetryOption
		if c, ok := retryKwargs["countdown"]; ok {
			d, err := seconds(c)
			if err != nil {
				return err
			}
			opts = append(opts, worker.Countdown(d))
		}
		if m, ok := retryKwargs["max_retries"].(int64); ok {
			opts = append(opts, worker.MaxRetries(int(m)))
		}
		return worker.Retry(exc, opts...)
	}, params("foo", "bar", "retry_kwargs"), worker.WithOptions(worker.TaskOptions{DefaultRetryDelay: time.Second}))
	retryOnce := func(ret func(r *worker.Request) any) worker.Handler {
		return func(ctx context.Context, args []any, kwargs map[string]any) (any, error) {
			r := request(ctx)
			if r.Retries > 0 {
				return ret(r), nil
			}
			countdown := 100 * time.Millisecond
			if c, ok := kwargs["countdown"]; ok && c == nil {
				countdown = -1 // the task's default retry delay
			} else if ok {
				d, err := seconds(c)
				if err != nil {
					return nil, err
				}
				countdown = d
			}
			max := 1
			if m, ok := kwargs["max_retries"].(int64); ok {
				max = int(m)
			}
			return nil, worker.Retry(nil, worker.Countdown(countdown), worker.MaxRetries(max))
		}
	}
	retryOpts := worker.WithOptions(worker.TaskOptions{MaxRetries: &one})
	// They take *args, so as errbacks Celery calls them inline, where
	// self.retry() only raises: nothing is sent.
	calledDirectly := worker.InlineErrback(func(context.Context, *worker.Request, *protocol.Exception, string) (any, error) {
		return nil, worker.PyError("Retry", "Task can be retried")
	})
	handle(mod+".retry_once", retryOnce(func(r *worker.Request) any { return int64(r.Retries) }), retryOpts, calledDirectly)
	handle(mod+".retry_once_priority", retryOnce(func(r *worker.Request) any { return int64(r.DeliveryInfo.Priority) }), retryOpts, calledDirectly)
	handle(mod+".retry_once_headers", retryOnce(func(r *worker.Request) any { return r.Headers }), retryOpts, calledDirectly)
	reg("redis_echo", func(ctx context.Context, message any, key string) error {
		// Python's body pushes str or bytes as they are; kombu 5.3+
		// sends bytes as typed JSON, which a []byte takes.
		if m, ok := message.(map[string]any); ok {
			if b, err := protocol.ToGo(m, reflect.TypeFor[[]byte]()); err == nil {
				return s.redis().RPush(ctx, key, b.Bytes()).Err()
			}
		}
		return s.redis().RPush(ctx, key, pyStr(message)).Err()
	}, params("message", "redis_key"), def("redis_key", "redis-echo"))
	reg("redis_echo_group_id", func(ctx context.Context, _ any, key string) error {
		return s.redis().RPush(ctx, key, pyStr(none(request(ctx).GroupID))).Err()
	}, params("_", "redis_key"), def("redis_key", "redis-group-ids"))
	reg("redis_count", func(ctx context.Context, key string) error {
		return s.redis().Incr(ctx, key).Err()
	}, params("redis_key"), def("redis_key", "redis-count"))
	reg("second_order_replace1", func(ctx context.Context, state bool) error {
		if !state {
			if err := s.redis().RPush(ctx, "redis-echo", "In A").Err(); err != nil {
				return err
			}
			return replace(chain(sig("second_order_replace2"), si("second_order_replace1").WithKwargs(map[string]any{"state": true})))
		}
		return s.redis().RPush(ctx, "redis-echo", "Out A").Err()
	}, params("state"), def("state", false))
	reg("second_order_replace2", func(ctx context.Context, state bool) error {
		if !state {
			if err := s.redis().RPush(ctx, "redis-echo", "In B").Err(); err != nil {
				return err
			}
			return replace(chain(sig("redis_echo", "In/Out C"), si("second_order_replace2").WithKwargs(map[string]any{"state": true})))
		}
		return s.redis().RPush(ctx, "redis-echo", "Out B").Err()
	}, params("state"), def("state", false))
	reg("build_chain_inside_task", func(ctx context.Context) (any, error) {
		res, err := s.apply(ctx, chain(sig("add", int64(1), int64(1)), sig("add", int64(2)),
			group(sig("add", int64(3)), sig("add", int64(4))), sig("add", int64(5))))
		if err != nil {
			return nil, err
		}
		return res.AsTuple(), nil
	})
	handle(mod+".fail", func(_ context.Context, args []any, _ map[string]any) (any, error) {
		return nil, expected(append([]any{"Task expected to fail"}, args...)...)
	})
	reg("fail_unpickleable", func(foo, bar any) error {
		exc := protocol.NewException("UnpickleableException", foo)
		exc.Module = mod
		return exc
	}, params("foo", "bar"))
	handle(mod+".fail_replaced", func(_ context.Context, args []any, _ map[string]any) (any, error) {
		return nil, replace(si("fail", args...))
	})
	handle(mod+".return_priority", func(ctx context.Context, _ []any, _ map[string]any) (any, error) {
		return fmt.Sprintf("Priority: %d", request(ctx).DeliveryInfo.Priority), nil
	})
	reg("return_properties", func(ctx context.Context) map[string]any {
		r := request(ctx)
		return map[string]any{"correlation_id": r.CorrelationID, "reply_to": r.ReplyTo, "app_id": r.AppID}
	})
	errs = append(errs, r.Register("auto_retry_class_task", func(ctx context.Context) (int64, error) {
		if n := request(ctx).Retries; n > 0 {
			return int64(n), nil
		}
		return 0, worker.PyError("ValueError")
	}, worker.WithOptions(worker.TaskOptions{MaxRetries: &one, AutoRetry: &worker.AutoRetryPolicy{
		On:      func(err error) bool { return worker.ToException(err).Type == "ValueError" },
		Backoff: time.Second,
	}})))
	// The signatures these return would not run (their args are missing):
	// they are only rebuilt by rebuild_signature.
	nested := map[string]func() *canvas.Signature{
		"chain_chain": func() *canvas.Signature { return chain(chain(sig("add"))) },
		"chain_group": func() *canvas.Signature { return chain(group(sig("add"))) },
		"chain_chord": func() *canvas.Signature { return chain(chord([]*canvas.Signature{sig("add")}, sig("add"))) },
		"group_chain": func() *canvas.Signature { return group(chain(sig("add"))) },
		"group_group": func() *canvas.Signature { return group(group(sig("add"))) },
		"group_chord": func() *canvas.Signature { return group(chord([]*canvas.Signature{sig("add")}, sig("add"))) },
		"chord_chain": func() *canvas.Signature { return chord([]*canvas.Signature{chain(sig("add"))}, sig("add")) },
		"chord_group": func() *canvas.Signature { return chord([]*canvas.Signature{group(sig("add"))}, sig("add")) },
		"chord_chord": func() *canvas.Signature {
			return chord([]*canvas.Signature{chord([]*canvas.Signature{sig("add")}, sig("add"))}, sig("add"))
		},
	}
	for kind, build := range nested {
		reg("return_nested_signature_"+kind, func() any { return build().Value() })
	}
	reg("rebuild_signature", func(sigDict any) error {
		return rebuild(sigDict)
	}, params("sig_dict"))
	reg("errback_old_style", func(ctx context.Context, requestID string) (string, error) {
		return requestID, s.redis().Incr(ctx, requestID).Err()
	}, params("request_id"))
	errs = append(errs, r.RegisterErrback(mod+".errback_new_style", func(ctx context.Context, req *worker.Request, _ *protocol.Exception, _ string) (any, error) {
		return req.ID, s.redis().Incr(ctx, req.ID).Err()
	}))
	reg("replaced_with_me", func() bool { return true })
	reg("add_pydantic", func(data map[string]any) (map[string]any, error) {
		v, err := pyAdd(data["x"], data["y"])
		return map[string]any{"result": v}, err
	}, params("data"))
	reg("replace_with_stamped_task", func(replaceWith any) error {
		if replaceWith == nil {
			return replace(sig("replaced_with_me"))
		}
		c, err := protocol.SignatureFromValue(replaceWith)
		if err != nil {
			return worker.PyError("TypeError", err.Error())
		}
		return worker.Replace(c)
	}, params("replace_with"), def("replace_with", nil))
	reg("soft_time_limit_must_exceed_time_limit", func() {},
		worker.WithOptions(worker.TaskOptions{SoftTimeLimit: 2 * time.Second, TimeLimit: time.Second}))
	return errors.Join(errs...)
}

// addToChord is self.add_to_chord(sig).
func (s *suite) addToChord(ctx context.Context, c *canvas.Signature) error {
	p, err := s.app.Producer(ctx)
	if err != nil {
		return err
	}
	_, err = canvas.AddToChord(ctx, p, c)
	return err
}

// rebuild is rebuild_signature's body: Signature.from_dict, then every
// task of a chain, group or chord must be a signature too.
func rebuild(v any) error {
	s, err := protocol.SignatureFromValue(v)
	if err != nil {
		return worker.PyError("TypeError", fmt.Sprintf("%s is not a signature object", protocol.Repr(v)))
	}
	var parts []any
	switch s.SubtaskType {
	case canvas.TypeChain, canvas.TypeGroup:
		if l, ok := s.Kwargs["tasks"].([]any); ok {
			parts = l
		} else {
			parts = []any{s.Kwargs["tasks"]}
		}
	case canvas.TypeChord:
		if l, ok := s.Kwargs["header"].([]any); ok {
			parts = append(parts, l...)
		} else {
			parts = append(parts, s.Kwargs["header"])
		}
		parts = append(parts, s.Kwargs["body"])
	}
	for _, p := range parts {
		if err := rebuild(p); err != nil {
			return err
		}
	}
	return nil
}

// none is Python's None for an empty id.
func none(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// truthy is Python's bool(v) for the values the tasks receive.
func truthy(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case bool:
		return x
	case int64:
		return x != 0
	case float64:
		return x != 0
	case string:
		return x != ""
	case []any:
		return len(x) > 0
	case map[string]any:
		return len(x) > 0
	}
	return true
}

// pyStr is str(v) as redis-py encodes a value it is given.
func pyStr(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case int64:
		return strconv.FormatInt(x, 10)
	}
	return protocol.Repr(v)
}

func seconds(v any) (time.Duration, error) {
	switch x := v.(type) {
	case int64:
		return time.Duration(x) * time.Second, nil
	case float64:
		return time.Duration(x * float64(time.Second)), nil
	}
	return 0, worker.PyError("TypeError", fmt.Sprintf("'%s' is not a number", protocol.Repr(v)))
}

// pyAdd is Python's x + y for numbers, strings and lists.
func pyAdd(x, y any) (any, error) {
	switch a := x.(type) {
	case int64:
		switch b := y.(type) {
		case int64:
			s := a + b
			if (s > a) == (b > 0) {
				return s, nil
			}
			return new(big.Int).Add(big.NewInt(a), big.NewInt(b)), nil
		case float64:
			return float64(a) + b, nil
		case bool:
			return pyAdd(a, boolInt(b))
		}
	case float64:
		switch b := y.(type) {
		case int64:
			return a + float64(b), nil
		case float64:
			return a + b, nil
		}
	case bool:
		return pyAdd(boolInt(a), y)
	case string:
		if b, ok := y.(string); ok {
			return a + b, nil
		}
	case []any:
		if b, ok := y.([]any); ok {
			return append(append([]any{}, a...), b...), nil
		}
	}
	return nil, worker.PyError("TypeError", fmt.Sprintf("unsupported operand type(s) for +: '%s' and '%s'", pyType(x), pyType(y)))
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// pySum is Python's sum(nums).
func pySum(nums []any) (any, error) {
	var total any = int64(0)
	for _, n := range nums {
		v, err := pyAdd(total, n)
		if err != nil {
			return nil, err
		}
		total = v
	}
	return total, nil
}

func pyType(v any) string {
	switch v.(type) {
	case nil:
		return "NoneType"
	case int64, *big.Int:
		return "int"
	case float64:
		return "float"
	case string:
		return "str"
	case bool:
		return "bool"
	case []any:
		return "list"
	case map[string]any:
		return "dict"
	}
	return strings.TrimPrefix(fmt.Sprintf("%T", v), "*")
}
