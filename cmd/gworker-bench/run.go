package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"
)

// runOne runs one worker in one mode on a fresh queue and measures it.
func runOne(parent context.Context, o *options, bb benchBroker, rdb *redis.Client, rs results, spec workerSpec, logDir string, round int, mode string) (s sample) {
	s = sample{Round: round, Mode: mode, Worker: spec.name, Tasks: o.n}
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)
	ctx, cancelT := context.WithTimeoutCause(ctx, o.timeout, fmt.Errorf("run limit %v reached", o.timeout))
	defer cancelT()
	fail := func(err error) sample {
		if c := context.Cause(ctx); c != nil && c != err {
			err = fmt.Errorf("%w (%v)", err, c)
		}
		s.Err = err.Error()
		return s
	}

	queue := fmt.Sprintf("bench.%s.%s.r%d.%s", spec.name, mode, round, randomHex(3))
	if err := bb.declare(queue); err != nil {
		return fail(err)
	}
	defer bb.remove(queue)
	var b *batch
	if mode != "latency" {
		var err error
		if b, err = buildBatch(queue, o.n); err != nil {
			return fail(err)
		}
		defer rs.remove(b.prefix, b.ids)
	}
	// watch follows the run's results, or the notifications of a worker
	// that writes none.
	watch := func(onFirst func()) (waiter, error) {
		if spec.noResults {
			return watchNotify(ctx, rdb, notifyChannel(queue), onFirst)
		}
		return rs.watch(ctx, b.prefix, b.ids, onFirst)
	}

	var (
		p          *proc
		cpu0, cpu1 time.Duration
		cnt0, cnt1 counters
		rss        *rssSampler
		// The servers' CPU over the same window (0 when not local).
		beam, redisPid = findServer("beam.smp", amqpAddr(o.amqpBase)), findServer("redis-server", redisAddr(o))
		srv0, srv1     [2]time.Duration
		serversCPU     = func() [2]time.Duration { return [2]time.Duration{processCPU(beam), processCPU(redisPid)} }
	)
	if o.transport == "redis" {
		beam = 0 // RabbitMQ plays no part: its column stays empty
	}
	start := func() error {
		var err error
		p, err = startWorker(spec, queue, logDir, round, mode)
		if err != nil {
			return err
		}
		rss = sampleRSS(p.pid(), 50*time.Millisecond)
		// A worker that dies ends the run at once.
		go func() {
			select {
			case err := <-p.done:
				p.done <- err
				cancel(fmt.Errorf("%s exited early (%v):\n%s", spec.name, err, p.tail()))
			case <-ctx.Done():
			}
		}()
		return nil
	}
	defer func() {
		if p == nil {
			return
		}
		peak := rss.Stop()
		if s.RSSMB == 0 {
			s.RSSMB, s.AnonMB = float64(peak)/(1<<20), float64(rss.PeakAnon())/(1<<20)
		}
		cancel(nil) // release the exit watcher before stopping
		if err := p.stop(30 * time.Second); err != nil && s.Err == "" {
			s.Err = err.Error()
		}
		if spec.noResults && s.Err == "" {
			// What a consumer that writes no result is checked on: it
			// saw every message, and once it is gone none is left,
			// neither waiting nor given back unacknowledged.
			if n, err := bb.length(queue); err != nil || n != 0 {
				s.Err = fmt.Sprintf("verify: %d messages left in %s after the run (%v)", n, queue, err)
			}
		}
	}()

	var first, last time.Time
	switch mode {
	case "prefill":
		w, err := watch(func() { cpu0, cnt0 = treeCPU(p.pid()), treeCounters(p.pid()); srv0 = serversCPU() })
		if err != nil {
			return fail(err)
		}
		if err := bb.publishAll(ctx, b, o.window); err != nil {
			w.close()
			return fail(err)
		}
		if err := start(); err != nil {
			w.close()
			return fail(err)
		}
		first, last, err = w.wait(ctx)
		if err != nil {
			return fail(err)
		}
		cpu1, cnt1, srv1 = treeCPU(p.pid()), treeCounters(p.pid()), serversCPU()
	case "e2e":
		if err := start(); err != nil {
			return fail(err)
		}
		if err := bb.waitConsumer(ctx, queue); err != nil {
			return fail(fmt.Errorf("%w:\n%s", err, p.tail()))
		}
		w, err := watch(nil)
		if err != nil {
			return fail(err)
		}
		cpu0, cnt0, srv0 = treeCPU(p.pid()), treeCounters(p.pid()), serversCPU()
		first = time.Now()
		if err := bb.publishAll(ctx, b, o.window); err != nil {
			w.close()
			return fail(err)
		}
		_, last, err = w.wait(ctx)
		if err != nil {
			return fail(err)
		}
		cpu1, cnt1, srv1 = treeCPU(p.pid()), treeCounters(p.pid()), serversCPU()
	case "latency":
		if err := start(); err != nil {
			return fail(err)
		}
		if err := bb.waitConsumer(ctx, queue); err != nil {
			return fail(fmt.Errorf("%w:\n%s", err, p.tail()))
		}
		cpu0, cnt0, srv0 = treeCPU(p.pid()), treeCounters(p.pid()), serversCPU()
		rts, err := runLatencyClient(ctx, o, logDir, queue)
		if err != nil {
			return fail(err)
		}
		rt := rts[queue]
		cpu1, cnt1, srv1 = treeCPU(p.pid()), treeCounters(p.pid()), serversCPU()
		s.Tasks = len(rt)
		s.P50us, s.P90us, s.P99us = percentile(rt, 50), percentile(rt, 90), percentile(rt, 99)
		// The window is the sum of the round trips: calls one after
		// the other, so tasks/s is one over the mean round trip.
		for _, v := range rt {
			s.Seconds += v / 1e6
		}
	}
	s.RSSMB = float64(rss.Stop()) / (1 << 20)
	s.AnonMB = float64(rss.PeakAnon()) / (1 << 20)
	if mode != "latency" {
		s.Seconds = last.Sub(first).Seconds()
	}
	n := s.Tasks
	if mode == "prefill" {
		n-- // the window starts at the first result
	}
	if s.Seconds > 0 && n > 0 {
		s.TasksPerS = float64(n) / s.Seconds
	}
	// In latency mode the CPU and server figures also cover the client's
	// warm-up calls.
	s.CPUus = float64((cpu1 - cpu0).Microseconds()) / float64(s.Tasks)
	s.Syscalls = float64(cnt1.rw-cnt0.rw) / float64(s.Tasks)
	s.Switches = float64(cnt1.switches-cnt0.switches) / float64(s.Tasks)
	if srv1[0] > srv0[0] && srv0[0] > 0 {
		s.BrokerUS = float64((srv1[0] - srv0[0]).Microseconds()) / float64(s.Tasks)
	}
	if srv1[1] > srv0[1] && srv0[1] > 0 {
		s.RedisUS = float64((srv1[1] - srv0[1]).Microseconds()) / float64(s.Tasks)
	}
	if b != nil && !spec.noResults {
		if err := rs.verify(ctx, b.prefix, b.ids); err != nil {
			return fail(err)
		}
	}
	return s
}

func declareQueue(conn *amqp.Connection, q string) error {
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	if err := ch.ExchangeDeclare(q, "direct", true, false, false, false, nil); err != nil {
		return err
	}
	if _, err := ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
		return err
	}
	return ch.QueueBind(q, q, q, false, nil)
}

func deleteQueue(conn *amqp.Connection, q string) {
	ch, err := conn.Channel()
	if err != nil {
		return
	}
	defer ch.Close()
	_, _ = ch.QueueDelete(q, false, false, false)
	_ = ch.ExchangeDelete(q, false, false)
}

// waitConsumer waits until the worker consumes the queue, then a little
// longer so that a prefork pool is settled.
func waitConsumer(ctx context.Context, conn *amqp.Connection, q string) error {
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	for {
		st, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
		if err != nil {
			return err
		}
		if st.Consumers > 0 {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("worker never consumed %s: %w", q, context.Cause(ctx))
		case <-time.After(50 * time.Millisecond):
		}
	}
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-time.After(time.Second):
		return nil
	}
}

// verify checks every stored result: SUCCESS, the right task id and 2i.
func verify(ctx context.Context, rdb *redis.Client, ids []string) error {
	for lo := 0; lo < len(ids); lo += 1000 {
		hi := min(lo+1000, len(ids))
		keys := make([]string, 0, hi-lo)
		for _, id := range ids[lo:hi] {
			keys = append(keys, keyPrefix+id)
		}
		vals, err := rdb.MGet(ctx, keys...).Result()
		if err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		for j, v := range vals {
			i := lo + j
			str, ok := v.(string)
			if !ok {
				return fmt.Errorf("verify: no result stored for task %d (%s)", i, ids[i])
			}
			var m struct {
				Status string          `json:"status"`
				Result json.RawMessage `json:"result"`
				TaskID string          `json:"task_id"`
			}
			if err := json.Unmarshal([]byte(str), &m); err != nil {
				return fmt.Errorf("verify: task %d: %v: %.200s", i, err, str)
			}
			if m.Status != "SUCCESS" || string(m.Result) != expected(i) || m.TaskID != ids[i] {
				return fmt.Errorf("verify: task %d: want SUCCESS %s, stored %.200s", i, expected(i), str)
			}
		}
	}
	return nil
}

func deleteKeys(rdb *redis.Client, ids []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for lo := 0; lo < len(ids); lo += 1000 {
		hi := min(lo+1000, len(ids))
		keys := make([]string, 0, hi-lo)
		for _, id := range ids[lo:hi] {
			keys = append(keys, keyPrefix+id)
		}
		rdb.Unlink(ctx, keys...)
	}
}

// stats are min/median/max of one figure.
type stats struct{ min, med, max float64 }

func summarize(v []float64) stats {
	if len(v) == 0 {
		return stats{}
	}
	v = slices.Clone(v)
	slices.Sort(v)
	med := v[len(v)/2]
	if len(v)%2 == 0 {
		med = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return stats{v[0], med, v[len(v)-1]}
}

func (s stats) format(prec int) string {
	return fmt.Sprintf("%.*f [%.*f–%.*f]", prec, s.med, prec, s.min, prec, s.max)
}

// Targets the report checks the medians against.
const (
	targetBareAck  = 0.95 // gworker / bare-ack tasks/s, results written
	targetCPUus    = 70   // gworker worker CPU µs per task
	targetRSSMB    = 20   // gworker peak RSS
	targetLatency  = 1.10 // gworker / minloop round-trip p50
	targetMinloop  = 0.9  // gworker / minloop tasks/s (stretch 1.0)
	targetCelery   = 5    // gworker / celery tasks/s
	targetMinCPU   = 1.3  // gworker / minloop CPU per task
	targetEventsTS = 0.85 // gworker-E / gworker tasks/s
)

// figures are one worker's runs in one mode.
type figures struct {
	tasksPerS, cpu, rss, anon, broker, redis, p50, p90, p99, sys, sw []float64
}

// medians are the medians of a worker's figures in one mode.
type medians struct{ tasksPerS, cpu, rss, anon, p50 float64 }

func report(w io.Writer, o *options, samples []sample) {
	type key struct{ mode, worker string }
	figs := map[key]*figures{}
	for _, s := range samples {
		if s.Err != "" {
			continue
		}
		k := key{s.Mode, s.Worker}
		f := figs[k]
		if f == nil {
			f = &figures{}
			figs[k] = f
		}
		f.tasksPerS = append(f.tasksPerS, s.TasksPerS)
		f.cpu = append(f.cpu, s.CPUus)
		f.rss = append(f.rss, s.RSSMB)
		f.anon = append(f.anon, s.AnonMB)
		f.broker = append(f.broker, s.BrokerUS)
		f.redis = append(f.redis, s.RedisUS)
		f.p50 = append(f.p50, s.P50us)
		f.p90 = append(f.p90, s.P90us)
		f.p99 = append(f.p99, s.P99us)
		f.sys = append(f.sys, s.Syscalls)
		f.sw = append(f.sw, s.Switches)
	}
	med := map[key]medians{}
	fmt.Fprintf(w, "\nsummary: median [min–max] over %d round(s), %d tasks per run (latency: %d round trips)\n", o.rounds, o.n, o.latencyN)
	fmt.Fprintf(w, "%-8s %-8s %-26s %-24s %-22s %-8s %-12s %-14s %-16s %-14s %s\n", "mode", "worker", "tasks/s", "worker CPU µs/task", "peak RSS MB", "anon MB", "syscalls/task", "switches/task", "RabbitMQ µs/task", "Redis µs/task", "round trip p50 / p90 / p99 µs")
	for _, mode := range o.modes {
		for _, wk := range o.workers {
			f, ok := figs[key{mode, wk}]
			if !ok && mode == "latency" && wk == "bare-ack" {
				continue // it writes no result to wait for
			}
			if !ok {
				fmt.Fprintf(w, "%-8s %-8s no successful run\n", mode, wk)
				continue
			}
			t, c, r, p50 := summarize(f.tasksPerS), summarize(f.cpu), summarize(f.rss), summarize(f.p50)
			a := summarize(f.anon)
			med[key{mode, wk}] = medians{t.med, c.med, r.med, a.med, p50.med}
			lat := ""
			if mode == "latency" {
				lat = fmt.Sprintf("%s / %.0f / %.0f", p50.format(0), summarize(f.p90).med, summarize(f.p99).med)
			}
			fmt.Fprintf(w, "%-8s %-8s %-26s %-24s %-22s %-8.1f %-12.2f %-14.2f %-16.0f %-14.0f %s\n", mode, wk, t.format(0), c.format(0), r.format(1), a.med,
				summarize(f.sys).med, summarize(f.sw).med, summarize(f.broker).med, summarize(f.redis).med, lat)
		}
	}
	fmt.Fprintln(w, "\nratios of medians (targets in parentheses):")
	check := func(ok bool) string {
		if ok {
			return "meets"
		}
		return "MISSES"
	}
	for _, mode := range o.modes {
		g, ok := med[key{mode, "gworker"}]
		if !ok {
			continue
		}
		var parts []string
		if mode == "latency" {
			if m, ok := med[key{mode, "minloop"}]; ok && m.p50 > 0 {
				r := g.p50 / m.p50
				parts = append(parts, fmt.Sprintf("gworker/minloop round-trip p50 %.3f× (≤%.2f: %s)", r, targetLatency, check(r <= targetLatency)))
			}
			if c, ok := med[key{mode, "celery"}]; ok && c.p50 > 0 {
				parts = append(parts, fmt.Sprintf("gworker/celery round-trip p50 %.3f×", g.p50/c.p50))
			}
			if c, ok := med[key{mode, "baseline"}]; ok && c.p50 > 0 {
				parts = append(parts, fmt.Sprintf("gworker/baseline round-trip p50 %.3f×", g.p50/c.p50))
			}
			fmt.Fprintf(w, "  %s:\n    %s\n", mode, strings.Join(parts, "\n    "))
			continue
		}
		if b, ok := med[key{mode, "bare-ack"}]; ok && b.tasksPerS > 0 {
			tr := g.tasksPerS / b.tasksPerS
			parts = append(parts, fmt.Sprintf("gworker/bare-ack tasks/s %.3f× (≥%.2f: %s)%s", tr, targetBareAck, check(tr >= targetBareAck),
				perRound(samples, mode, "gworker", "bare-ack")))
		}
		parts = append(parts, fmt.Sprintf("gworker CPU %.0f µs/task (≤%d: %s)", g.cpu, targetCPUus, check(g.cpu <= targetCPUus)))
		if m, ok := med[key{mode, "minloop"}]; ok && m.tasksPerS > 0 && m.cpu > 0 {
			tr, cr := g.tasksPerS/m.tasksPerS, g.cpu/m.cpu
			parts = append(parts,
				fmt.Sprintf("gworker/minloop tasks/s %.3f× (≥%.1f: %s; ≥1.0 stretch: %s)", tr, targetMinloop, check(tr >= targetMinloop), check(tr >= 1.0)),
				fmt.Sprintf("gworker/minloop CPU/task %.3f× (≤%.1f: %s)", cr, targetMinCPU, check(cr <= targetMinCPU)))
		}
		if e, ok := med[key{mode, "gworker-E"}]; ok && e.tasksPerS > 0 && g.tasksPerS > 0 {
			tr := e.tasksPerS / g.tasksPerS
			parts = append(parts, fmt.Sprintf("gworker-E/gworker tasks/s %.3f× (≥%.2f: %s), CPU/task %.2f×", tr, targetEventsTS, check(tr >= targetEventsTS), e.cpu/g.cpu))
		}
		if c, ok := med[key{mode, "baseline"}]; ok && c.tasksPerS > 0 && c.cpu > 0 {
			parts = append(parts, fmt.Sprintf("gworker/baseline tasks/s %.2f×%s, CPU/task %.2f×, RSS %.2f×", g.tasksPerS/c.tasksPerS,
				perRound(samples, mode, "gworker", "baseline"), g.cpu/c.cpu, g.rss/c.rss))
		}
		if c, ok := med[key{mode, "celery"}]; ok && c.tasksPerS > 0 {
			tr := g.tasksPerS / c.tasksPerS
			parts = append(parts, fmt.Sprintf("gworker/celery tasks/s %.3f× (≥%d: %s)", tr, targetCelery, check(tr >= targetCelery)),
				fmt.Sprintf("gworker/celery CPU/task %.2f×", g.cpu/c.cpu))
		}
		parts = append(parts, fmt.Sprintf("gworker peak RSS %.1f MB at -c %d (≤%d: %s), of which anonymous %.1f MB", g.rss, o.conc, targetRSSMB, check(g.rss <= targetRSSMB), g.anon))
		fmt.Fprintf(w, "  %s:\n    %s\n", mode, strings.Join(parts, "\n    "))
	}
}

// perRound formats the tasks/s ratio of worker a to worker b within each
// round that both completed, and their median: the two ran minutes apart
// at most, so a ratio within a round is spared the machine's slower
// swings, which the ratio of medians over all rounds is not. Empty with
// fewer than two such rounds.
func perRound(samples []sample, mode, a, b string) string {
	type pair struct{ a, b float64 }
	byRound := map[int]*pair{}
	for _, s := range samples {
		if s.Err != "" || s.Mode != mode || (s.Worker != a && s.Worker != b) {
			continue
		}
		p := byRound[s.Round]
		if p == nil {
			p = &pair{}
			byRound[s.Round] = p
		}
		if s.Worker == a {
			p.a = s.TasksPerS
		} else {
			p.b = s.TasksPerS
		}
	}
	rounds := make([]int, 0, len(byRound))
	for r, p := range byRound {
		if p.a > 0 && p.b > 0 {
			rounds = append(rounds, r)
		}
	}
	if len(rounds) < 2 {
		return ""
	}
	slices.Sort(rounds)
	ratios := make([]float64, len(rounds))
	texts := make([]string, len(rounds))
	for i, r := range rounds {
		ratios[i] = byRound[r].a / byRound[r].b
		texts[i] = fmt.Sprintf("%.2f", ratios[i])
	}
	return fmt.Sprintf(" [per round %s: median %.2f×]", strings.Join(texts, ", "), summarize(ratios).med)
}

// amqpAddr is the host:port of a RabbitMQ URL ("" when it has none).
func amqpAddr(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return ""
	}
	if u.Port() == "" {
		return net.JoinHostPort(u.Hostname(), "5672")
	}
	return u.Host
}

// redisAddr is the host:port of the Redis server whose CPU the run
// reports: the broker's with -transport redis, else the results'.
func redisAddr(o *options) string {
	raw := o.redisURL
	if o.transport == "redis" {
		raw = o.redisBroker
	}
	opt, err := redis.ParseURL(raw)
	if err != nil {
		return ""
	}
	return opt.Addr
}
