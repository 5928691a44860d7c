package control

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/worker"
)

type command func(ctx context.Context, a args) (any, error)

func ok(s string) protocol.Dict  { return protocol.Dict{{Key: "ok", Value: s}} }
func nok(s string) protocol.Dict { return protocol.Dict{{Key: "error", Value: s}} }

// Commands returns the names of the commands a node answers, sorted.
func (n *Node) Commands() []string {
	out := make([]string, 0, len(n.cmds))
	for k := range n.cmds {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (n *Node) commands() map[string]command {
	c := map[string]command{
		// inspect
		"ping":          func(context.Context, args) (any, error) { return ok("pong"), nil },
		"stats":         n.stats,
		"active":        n.active,
		"reserved":      n.reserved,
		"scheduled":     n.scheduled,
		"registered":    n.registered,
		"query_task":    n.queryTask,
		"revoked":       n.revoked,
		"active_queues": n.activeQueues,
		"conf":          n.conf,
		"report":        n.report,
		"clock": func(context.Context, args) (any, error) {
			return protocol.Dict{{Key: "clock", Value: n.clock.Value()}}, nil
		},
		"hello": n.hello,
		// control
		"revoke":          n.revoke,
		"terminate":       n.terminate,
		"rate_limit":      n.rateLimit,
		"time_limit":      n.timeLimit,
		"add_consumer":    n.addConsumer,
		"cancel_consumer": n.cancelConsumer,
		"pool_grow":       n.poolGrow,
		"pool_shrink":     n.poolShrink,
		"autoscale":       n.autoscale,
		"enable_events":   n.enableEvents,
		"disable_events":  n.disableEvents,
		"heartbeat":       n.heartbeat,
		"shutdown":        n.shutdown,
		"election":        func(context.Context, args) (any, error) { return nil, nil },

		// Celery 5.3 and later.
		"revoke_by_stamped_headers": n.revokeByStampedHeaders,
	}
	// Celery's aliases.
	for alias, name := range map[string]string{"dump_conf": "conf", "dump_schedule": "scheduled", "dump_reserved": "reserved",
		"dump_active": "active", "dump_revoked": "revoked", "dump_tasks": "registered"} {
		c[alias] = c[name]
	}
	return c
}

// taskInfo is Celery's Request.info().
func taskInfo(ti worker.TaskInfo, safe bool) protocol.Dict {
	var argsV, kwargsV any = ti.Args, ti.Kwargs
	if ti.Args == nil {
		argsV = []any{}
	}
	if ti.Kwargs == nil {
		kwargsV = map[string]any{}
	}
	if safe {
		argsV, kwargsV = protocol.ArgsRepr(ti.Args), protocol.KwargsRepr(ti.Kwargs)
	}
	var start, pid, prio any
	if !ti.TimeStart.IsZero() {
		start = float64(ti.TimeStart.UnixMicro()) / 1e6
		pid = int64(ti.WorkerPID)
	}
	if ti.HasPriority {
		prio = int64(ti.DeliveryInfo.Priority)
	}
	return protocol.Dict{
		{Key: "id", Value: ti.ID},
		{Key: "name", Value: ti.Name},
		{Key: "args", Value: argsV},
		{Key: "kwargs", Value: kwargsV},
		{Key: "type", Value: ti.Name},
		{Key: "hostname", Value: ti.Hostname},
		{Key: "time_start", Value: start},
		{Key: "acknowledged", Value: ti.Acknowledged},
		{Key: "delivery_info", Value: protocol.Dict{
			{Key: "exchange", Value: ti.DeliveryInfo.Exchange},
			{Key: "routing_key", Value: ti.DeliveryInfo.RoutingKey},
			{Key: "priority", Value: prio},
			{Key: "redelivered", Value: ti.DeliveryInfo.Redelivered},
		}},
		{Key: "worker_pid", Value: pid},
	}
}

func infos(tis []worker.TaskInfo, safe bool) []any {
	out := make([]any, 0, len(tis))
	for _, ti := range tis {
		out = append(out, taskInfo(ti, safe))
	}
	return out
}

func (n *Node) active(_ context.Context, a args) (any, error) {
	return infos(n.cfg.Worker.Inspector().Active(), a.boolean("safe")), nil
}

func (n *Node) reserved(context.Context, args) (any, error) {
	return infos(n.cfg.Worker.Inspector().Reserved(), false), nil
}

func (n *Node) scheduled(context.Context, args) (any, error) {
	st := n.cfg.Worker.Inspector().Scheduled()
	out := make([]any, 0, len(st))
	for _, s := range st {
		var eta any
		if !s.ETA.IsZero() {
			eta = protocol.FormatTime(s.ETA)
		}
		out = append(out, protocol.Dict{
			{Key: "eta", Value: eta},
			{Key: "priority", Value: int64(s.Priority)},
			{Key: "request", Value: taskInfo(s.Request, false)},
		})
	}
	return out, nil
}

func (n *Node) queryTask(_ context.Context, a args) (any, error) {
	states := n.cfg.Worker.Inspector().QueryTasks(a.strs("ids")...)
	out := protocol.Dict{}
	ids := make([]string, 0, len(states))
	for id := range states {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		st := states[id]
		state := st.State
		if state == "scheduled" {
			state = "reserved"
		}
		out = append(out, protocol.Item{Key: id, Value: []any{state, taskInfo(st.Info, false)}})
	}
	return out, nil
}

func (n *Node) revoked(context.Context, args) (any, error) {
	ids := n.cfg.Worker.RevokedSet().IDs()
	out := make([]any, len(ids))
	for i, id := range ids {
		out[i] = id
	}
	return out, nil
}

// taskAttr is a task attribute as Python's str(getattr(task, name)), or
// nil when Python's would be None.
func taskAttr(t *worker.Task, name string) any {
	o := t.Options
	switch name {
	case "name":
		return t.Name
	case "rate_limit":
		if o.RateLimit != "" {
			return o.RateLimit
		}
	case "time_limit":
		if o.TimeLimit > 0 {
			return strconv.FormatFloat(o.TimeLimit.Seconds(), 'f', -1, 64)
		}
	case "soft_time_limit":
		if o.SoftTimeLimit > 0 {
			return strconv.FormatFloat(o.SoftTimeLimit.Seconds(), 'f', -1, 64)
		}
	case "ignore_result":
		if o.IgnoreResult {
			return "True"
		}
		return "False"
	case "acks_late":
		if o.AcksLate != nil {
			if *o.AcksLate {
				return "True"
			}
			return "False"
		}
	case "max_retries":
		if o.MaxRetries == nil {
			return "3"
		}
		if *o.MaxRetries < 0 {
			return nil
		}
		return strconv.Itoa(*o.MaxRetries)
	case "track_started":
		if o.TrackStarted {
			return "True"
		}
		return "False"
	}
	return nil
}

func (n *Node) registered(_ context.Context, a args) (any, error) {
	items := a.strs("taskinfoitems")
	if len(items) == 0 {
		items = []string{"exchange", "routing_key", "rate_limit"}
	}
	builtins := a.boolean("builtins")
	reg := n.cfg.Worker.Registry()
	out := []any{}
	for _, name := range reg.Names() {
		if !builtins && strings.HasPrefix(name, "celery.") {
			continue
		}
		t, err := reg.Lookup(name)
		if err != nil {
			continue
		}
		var fields []string
		for _, it := range items {
			if v := taskAttr(t, it); v != nil {
				fields = append(fields, it+"="+v.(string))
			}
		}
		if len(fields) > 0 {
			out = append(out, name+" ["+strings.Join(fields, " ")+"]")
		} else {
			out = append(out, name)
		}
	}
	return out, nil
}

// queueInfo is kombu's Queue.as_dict(recurse=True) for a task queue as
// Celery declares it.
func queueInfo(name string) protocol.Dict {
	return protocol.Dict{
		{Key: "name", Value: name},
		{Key: "exchange", Value: protocol.Dict{
			{Key: "name", Value: name}, {Key: "type", Value: "direct"}, {Key: "arguments", Value: nil},
			{Key: "durable", Value: true}, {Key: "passive", Value: false}, {Key: "auto_delete", Value: false},
			{Key: "delivery_mode", Value: nil}, {Key: "no_declare", Value: false},
		}},
		{Key: "routing_key", Value: name},
		{Key: "queue_arguments", Value: nil},
		{Key: "binding_arguments", Value: nil},
		{Key: "consumer_arguments", Value: nil},
		{Key: "durable", Value: true},
		{Key: "exclusive", Value: false},
		{Key: "auto_delete", Value: false},
		{Key: "no_ack", Value: false},
		{Key: "alias", Value: nil},
		{Key: "bindings", Value: []any{}},
		{Key: "no_declare", Value: nil},
		{Key: "expires", Value: nil},
		{Key: "message_ttl", Value: nil},
		{Key: "max_length", Value: nil},
		{Key: "max_length_bytes", Value: nil},
		{Key: "max_priority", Value: nil},
	}
}

func (n *Node) activeQueues(context.Context, args) (any, error) {
	qs := n.cfg.Worker.Inspector().Queues()
	out := make([]any, len(qs))
	for i, q := range qs {
		out[i] = queueInfo(q)
	}
	return out, nil
}

func (n *Node) conf(context.Context, args) (any, error) {
	if n.cfg.Conf == nil {
		return protocol.Dict{}, nil
	}
	return n.cfg.Conf, nil
}

func (n *Node) report(context.Context, args) (any, error) {
	sw := n.cfg.Software
	if sw == "" {
		sw = "gworker"
	}
	if n.cfg.AppName != "" && n.cfg.AppName != "gworker" {
		sw = strings.TrimSpace(n.cfg.AppName+" "+n.cfg.AppVersion) + " (" + sw + ")"
	}
	host, _ := os.Hostname()
	text := fmt.Sprintf("\nsoftware -> %s %s platform -> system:%s arch:%s\nnode -> %s host -> %s pid -> %d\nbroker -> %v\n",
		sw, runtime.Version(), runtime.GOOS, runtime.GOARCH, n.cfg.Hostname, host, n.cfg.Worker.Inspector().PID(), brokerURI(n.cfg.Broker))
	return ok(text), nil
}

func brokerURI(b protocol.Dict) string {
	if b == nil {
		return "unknown"
	}
	h, _ := b.Get("hostname")
	p, _ := b.Get("port")
	v, _ := b.Get("virtual_host")
	t, _ := b.Get("transport")
	return fmt.Sprintf("%v://%v:%v/%v", t, h, p, v)
}

func (n *Node) stats(context.Context, args) (any, error) {
	w := n.cfg.Worker.Inspector()
	totals := w.Totals()
	names := make([]string, 0, len(totals))
	for k := range totals {
		names = append(names, k)
	}
	sort.Strings(names)
	total := protocol.Dict{}
	for _, k := range names {
		total = append(total, protocol.Item{Key: k, Value: totals[k]})
	}
	broker := n.cfg.Broker
	if broker == nil {
		broker = protocol.Dict{}
	}
	return protocol.Dict{
		{Key: "total", Value: total},
		{Key: "pid", Value: int64(w.PID())},
		{Key: "clock", Value: strconv.FormatInt(n.clock.Value(), 10)},
		{Key: "uptime", Value: int64(time.Since(n.started).Seconds())},
		{Key: "pool", Value: protocol.Dict{
			{Key: "max-concurrency", Value: int64(w.Concurrency())},
			{Key: "processes", Value: []any{int64(w.PID())}},
			{Key: "max-tasks-per-child", Value: "N/A"},
			{Key: "put-guarded-by-semaphore", Value: false},
			{Key: "timeouts", Value: []any{int64(0), int64(0)}},
			{Key: "implementation", Value: "goroutines"},
		}},
		{Key: "broker", Value: broker},
		{Key: "prefetch_count", Value: int64(w.Prefetch())},
		{Key: "app", Value: protocol.Dict{{Key: "name", Value: n.cfg.AppName}, {Key: "version", Value: n.cfg.AppVersion}}},
		{Key: "rusage", Value: rusage()},
	}, nil
}

// BrokerInfo builds the `broker` entry of `inspect stats` from a broker
// URL, as kombu's Connection.info() reports it (the password left out).
func BrokerInfo(rawURL string) protocol.Dict {
	u, err := url.Parse(rawURL)
	if err != nil {
		return protocol.Dict{}
	}
	transport, ssl, port := "amqp", false, int64(5672)
	switch u.Scheme {
	case "amqps":
		ssl, port = true, 5671
	case "redis", "rediss":
		transport, port, ssl = "redis", 6379, u.Scheme == "rediss"
	}
	if p, err := strconv.ParseInt(u.Port(), 10, 64); err == nil {
		port = p
	}
	vhost := strings.TrimPrefix(u.Path, "/")
	if vhost == "" && transport == "amqp" {
		vhost = "/"
	}
	if v, err := url.PathUnescape(vhost); err == nil {
		vhost = v
	}
	var user any
	if u.User != nil {
		user = u.User.Username()
	}
	return protocol.Dict{
		{Key: "hostname", Value: u.Hostname()}, {Key: "userid", Value: user}, {Key: "virtual_host", Value: vhost},
		{Key: "port", Value: port}, {Key: "insist", Value: false}, {Key: "ssl", Value: ssl},
		{Key: "transport", Value: transport}, {Key: "connect_timeout", Value: int64(4)},
		{Key: "transport_options", Value: protocol.Dict{}}, {Key: "login_method", Value: "PLAIN"},
		{Key: "uri_prefix", Value: nil}, {Key: "heartbeat", Value: 120.0},
		{Key: "failover_strategy", Value: "round-robin"}, {Key: "alternates", Value: []any{}},
	}
}

func (n *Node) revoke(_ context.Context, a args) (any, error) {
	ids := uniq(a.strs("task_id"))
	for _, id := range ids {
		if err := protocol.CheckID(id); err != nil {
			return nil, protocol.NewException("ValueError", err.Error())
		}
	}
	if len(ids) == 0 {
		return ok("tasks  flagged as revoked"), nil
	}
	terminate := a.boolean("terminate")
	sig := "SIGTERM"
	if terminate {
		var err error
		if sig, err = signalName(a["signal"]); err != nil {
			return nil, err
		}
	}
	terminated := n.cfg.Worker.Revoke(ids, terminate, sig)
	if terminate {
		if len(terminated) == 0 {
			return ok("terminate: tasks unknown"), nil
		}
		for _, id := range terminated {
			n.log.Info(fmt.Sprintf("Terminating %s (%s)", id, sig))
		}
		return ok("terminate: " + strings.Join(terminated, ", ")), nil
	}
	idstr := strings.Join(ids, ", ")
	n.log.Info("Tasks flagged as revoked: " + idstr)
	return ok("tasks " + idstr + " flagged as revoked"), nil
}

// signalNumbers are the signals of Linux by name, for terminate's signal
// argument, which Celery resolves with getattr(signal, name).
var signalNumbers = map[string]int64{
	"SIGHUP": 1, "SIGINT": 2, "SIGQUIT": 3, "SIGILL": 4, "SIGTRAP": 5, "SIGABRT": 6, "SIGIOT": 6, "SIGBUS": 7,
	"SIGFPE": 8, "SIGKILL": 9, "SIGUSR1": 10, "SIGSEGV": 11, "SIGUSR2": 12, "SIGPIPE": 13, "SIGALRM": 14,
	"SIGTERM": 15, "SIGSTKFLT": 16, "SIGCHLD": 17, "SIGCLD": 17, "SIGCONT": 18, "SIGSTOP": 19, "SIGTSTP": 20,
	"SIGTTIN": 21, "SIGTTOU": 22, "SIGURG": 23, "SIGXCPU": 24, "SIGXFSZ": 25, "SIGVTALRM": 26, "SIGPROF": 27,
	"SIGWINCH": 28, "SIGIO": 29, "SIGPOLL": 29, "SIGPWR": 30, "SIGSYS": 31, "SIGRTMIN": 34, "SIGRTMAX": 64,
}

// signalName resolves terminate's signal as Celery's signals.signum does:
// nil is SIGTERM, a number is taken as it is, a name must be upper case
// (TypeError otherwise), with or without its SIG prefix, and name a signal
// (AttributeError otherwise).
func signalName(v any) (string, error) {
	switch s := v.(type) {
	case nil:
		return "SIGTERM", nil
	case int64:
		for name, num := range signalNumbers {
			if num == s && name != "SIGIOT" && name != "SIGCLD" && name != "SIGPOLL" {
				return name, nil
			}
		}
		return strconv.FormatInt(s, 10), nil
	case string:
		if s == "" {
			return "SIGTERM", nil
		}
		if strings.ToUpper(s) != s || strings.ToLower(s) == s {
			return "", protocol.NewException("TypeError", "signal name must be uppercase string.")
		}
		if !strings.HasPrefix(s, "SIG") {
			s = "SIG" + s
		}
		if _, ok := signalNumbers[s]; !ok {
			return "", protocol.NewException("AttributeError", fmt.Sprintf("module 'signal' has no attribute %s", protocol.PyRepr(s)))
		}
		return s, nil
	}
	return "", protocol.NewException("TypeError", "signal name must be uppercase string.")
}

func uniq(ids []string) []string {
	seen := make(map[string]bool, len(ids))
	out := ids[:0:0]
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

func (n *Node) terminate(ctx context.Context, a args) (any, error) {
	b := args{"task_id": a["task_id"], "terminate": true, "signal": a["signal"]}
	return n.revoke(ctx, b)
}

func (n *Node) rateLimit(_ context.Context, a args) (any, error) {
	name, rate := a.str("task_name"), ""
	switch v := a["rate_limit"].(type) {
	case string:
		rate = v
	case int64:
		rate = strconv.FormatInt(v, 10)
	case float64:
		rate = strconv.FormatFloat(v, 'f', -1, 64)
	}
	if _, err := worker.ParseRateLimit(rate); err != nil {
		return nok(fmt.Sprintf("Invalid rate limit string: %s", protocol.NewException("ValueError", err.Error()).Error())), nil
	}
	if err := n.cfg.Worker.Controls().SetRateLimit(name, rate); err != nil {
		if errors.Is(err, worker.ErrUnknownTask) {
			n.log.Error("Rate limit attempt for unknown task " + name)
			return nok("unknown task"), nil
		}
		return nil, err
	}
	_ = n.cfg.Worker.Registry().SetRateLimit(name, rate) // so that `registered` shows it
	if rate == "" {
		n.log.Info("Rate limits disabled for tasks of type " + name)
		return ok("rate limit disabled successfully"), nil
	}
	n.log.Info(fmt.Sprintf("New rate limit for tasks of type %s: %s.", name, rate))
	return ok("new rate limit set successfully"), nil
}

func (n *Node) timeLimit(_ context.Context, a args) (any, error) {
	name := a.str("task_name")
	soft, _, err := a.seconds("soft")
	if err != nil {
		return nil, err
	}
	hard, _, err := a.seconds("hard")
	if err != nil {
		return nil, err
	}
	if err := n.cfg.Worker.Controls().SetTimeLimit(name, soft, hard); err != nil {
		if errors.Is(err, worker.ErrUnknownTask) {
			n.log.Error("Change time limit attempt for unknown task " + name)
			return nok("unknown task"), nil
		}
		return nil, err
	}
	n.log.Info(fmt.Sprintf("New time limits for tasks of type %s: soft=%v hard=%v", name, soft, hard))
	return ok("time limits set successfully"), nil
}

func (n *Node) addConsumer(ctx context.Context, a args) (any, error) {
	q := a.str("queue")
	if q == "" {
		return nil, protocol.NewException("TypeError", "add_consumer() missing 1 required positional argument: 'queue'")
	}
	if err := n.cfg.Worker.Controls().AddQueue(ctx, q); err != nil {
		return nil, err
	}
	return ok("add consumer " + q), nil
}

func (n *Node) cancelConsumer(ctx context.Context, a args) (any, error) {
	q := a.str("queue")
	if err := n.cfg.Worker.Controls().CancelQueue(ctx, q); err != nil && !errors.Is(err, worker.ErrNotConsuming) {
		return nil, err
	}
	return ok("no longer consuming from " + q), nil
}

// MaxPoolResize bounds the n of one pool_grow or pool_shrink: Celery grows
// its pool by n processes with no bound, and n = 1e9 from anyone on the
// broker would exhaust the node.
const MaxPoolResize = 1000

// poolN is the n of pool_grow and pool_shrink: a whole number from 1 to
// MaxPoolResize.
func poolN(a args) (int, error) {
	if f, ok := a["n"].(float64); ok && f != float64(int64(f)) {
		return 0, protocol.NewException("ValueError", fmt.Sprintf("n must be a whole number, not %v", f))
	}
	k, err := a.int("n", 1)
	if err != nil {
		return 0, err
	}
	if k < 1 || k > MaxPoolResize {
		return 0, protocol.NewException("ValueError", fmt.Sprintf("n must be from 1 to %d, not %d", MaxPoolResize, k))
	}
	return int(k), nil
}

func (n *Node) poolGrow(_ context.Context, a args) (any, error) {
	k, err := poolN(a)
	if err != nil {
		return nil, err
	}
	if err := n.cfg.Worker.Controls().ResizePool(k); err != nil {
		return nil, err
	}
	return ok("pool will grow"), nil
}

func (n *Node) poolShrink(_ context.Context, a args) (any, error) {
	k, err := poolN(a)
	if err != nil {
		return nil, err
	}
	if err := n.cfg.Worker.Controls().ResizePool(-k); err != nil {
		return nil, err
	}
	return ok("pool will shrink"), nil
}

func (n *Node) autoscale(context.Context, args) (any, error) {
	return nil, protocol.NewException("ValueError", "Autoscale not enabled")
}

func (n *Node) enableEvents(context.Context, args) (any, error) {
	if n.cfg.Events == nil {
		return nil, protocol.NewException("RuntimeError", "events are not available on this node")
	}
	if n.cfg.Events.EnableTaskEvents(true) {
		return ok("task events already enabled"), nil
	}
	n.log.Info("Events of group {task} enabled by remote.")
	return ok("task events enabled"), nil
}

func (n *Node) disableEvents(context.Context, args) (any, error) {
	if n.cfg.Events == nil {
		return nil, protocol.NewException("RuntimeError", "events are not available on this node")
	}
	if !n.cfg.Events.EnableTaskEvents(false) {
		return ok("task events already disabled"), nil
	}
	n.log.Info("Events of group {task} disabled by remote.")
	return ok("task events disabled"), nil
}

func (n *Node) heartbeat(ctx context.Context, _ args) (any, error) {
	if n.cfg.Events != nil {
		n.cfg.Events.Heartbeat(ctx)
	}
	return nil, nil
}

func (n *Node) shutdown(_ context.Context, a args) (any, error) {
	msg := a.str("msg")
	if msg == "" {
		msg = "Got shutdown from remote"
	}
	if n.cfg.Shutdown == nil {
		return nil, protocol.NewException("RuntimeError", "shutdown is not available on this node")
	}
	n.log.Warn(msg)
	n.cfg.Shutdown()
	return nil, nil
}

func (n *Node) hello(_ context.Context, a args) (any, error) {
	from := a.str("from_node")
	if from == n.cfg.Hostname {
		return nil, nil
	}
	n.log.Info("sync with "+from, zap.String("node", from))
	rs := n.cfg.Worker.RevokedSet()
	if m, ok := a["revoked"].(map[string]any); ok {
		MergeRevoked(rs, m)
	}
	return protocol.Dict{
		{Key: "revoked", Value: RevokedData(rs)},
		{Key: "clock", Value: n.clock.Forward()},
	}, nil
}
