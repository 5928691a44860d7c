package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"
)

// runOne runs one worker in one mode on a fresh queue and measures it.
func runOne(parent context.Context, o *options, bb benchBroker, rs results, spec workerSpec, logDir string, round int, mode string) (s sample) {
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
	b, err := buildBatch(queue, o.n)
	if err != nil {
		return fail(err)
	}
	defer rs.remove(b.prefix, b.ids)

	var (
		p          *proc
		cpu0, cpu1 time.Duration
		rss        *rssSampler
		// The servers' CPU over the same window (0 when not local).
		beam, redisPid = findProcess("beam.smp"), findProcess("redis-server")
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
			s.RSSMB = float64(peak) / (1 << 20)
		}
		cancel(nil) // release the exit watcher before stopping
		if err := p.stop(30 * time.Second); err != nil && s.Err == "" {
			s.Err = err.Error()
		}
	}()

	var first, last time.Time
	switch mode {
	case "prefill":
		w, err := rs.watch(ctx, b.prefix, b.ids, func() { cpu0 = treeCPU(p.pid()); srv0 = serversCPU() })
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
		cpu1, srv1 = treeCPU(p.pid()), serversCPU()
	case "e2e":
		if err := start(); err != nil {
			return fail(err)
		}
		if err := bb.waitConsumer(ctx, queue); err != nil {
			return fail(fmt.Errorf("%w:\n%s", err, p.tail()))
		}
		w, err := rs.watch(ctx, b.prefix, b.ids, nil)
		if err != nil {
			return fail(err)
		}
		cpu0, srv0 = treeCPU(p.pid()), serversCPU()
		first = time.Now()
		if err := bb.publishAll(ctx, b, o.window); err != nil {
			w.close()
			return fail(err)
		}
		_, last, err = w.wait(ctx)
		if err != nil {
			return fail(err)
		}
		cpu1, srv1 = treeCPU(p.pid()), serversCPU()
	}
	s.RSSMB = float64(rss.Stop()) / (1 << 20)
	s.Seconds = last.Sub(first).Seconds()
	n := o.n
	if mode == "prefill" {
		n-- // the window starts at the first result
	}
	if s.Seconds > 0 && n > 0 {
		s.TasksPerS = float64(n) / s.Seconds
	}
	s.CPUus = float64((cpu1 - cpu0).Microseconds()) / float64(o.n)
	if srv1[0] > srv0[0] && srv0[0] > 0 {
		s.BrokerUS = float64((srv1[0] - srv0[0]).Microseconds()) / float64(o.n)
	}
	if srv1[1] > srv0[1] && srv0[1] > 0 {
		s.RedisUS = float64((srv1[1] - srv0[1]).Microseconds()) / float64(o.n)
	}
	if err := rs.verify(ctx, b.prefix, b.ids); err != nil {
		return fail(err)
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

func report(w io.Writer, o *options, samples []sample) {
	type key struct{ mode, worker string }
	figs := map[key][5][]float64{}
	for _, s := range samples {
		if s.Err != "" {
			continue
		}
		k := key{s.Mode, s.Worker}
		f := figs[k]
		f[0] = append(f[0], s.TasksPerS)
		f[1] = append(f[1], s.CPUus)
		f[2] = append(f[2], s.RSSMB)
		f[3] = append(f[3], s.BrokerUS)
		f[4] = append(f[4], s.RedisUS)
		figs[k] = f
	}
	med := map[key][3]float64{}
	fmt.Fprintf(w, "\nsummary: median [min–max] over %d round(s), %d tasks per run\n", o.rounds, o.n)
	fmt.Fprintf(w, "%-8s %-8s %-26s %-24s %-22s %-16s %s\n", "mode", "worker", "tasks/s", "worker CPU µs/task", "peak RSS MB", "RabbitMQ µs/task", "Redis µs/task")
	for _, mode := range o.modes {
		for _, wk := range o.workers {
			f, ok := figs[key{mode, wk}]
			if !ok {
				fmt.Fprintf(w, "%-8s %-8s no successful run\n", mode, wk)
				continue
			}
			t, c, r := summarize(f[0]), summarize(f[1]), summarize(f[2])
			med[key{mode, wk}] = [3]float64{t.med, c.med, r.med}
			fmt.Fprintf(w, "%-8s %-8s %-26s %-24s %-22s %-16.0f %.0f\n", mode, wk, t.format(0), c.format(0), r.format(1),
				summarize(f[3]).med, summarize(f[4]).med)
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
		if m, ok := med[key{mode, "minloop"}]; ok && m[0] > 0 && m[1] > 0 {
			tr, cr := g[0]/m[0], g[1]/m[1]
			parts = append(parts,
				fmt.Sprintf("gworker/minloop tasks/s %.3f× (≥0.9: %s; ≥1.0 stretch: %s)", tr, check(tr >= 0.9), check(tr >= 1.0)),
				fmt.Sprintf("gworker/minloop CPU/task %.3f× (≤1.3: %s)", cr, check(cr <= 1.3)))
		}
		if e, ok := med[key{mode, "gworker-E"}]; ok && e[0] > 0 && g[0] > 0 {
			tr := e[0] / g[0]
			parts = append(parts, fmt.Sprintf("gworker-E/gworker tasks/s %.3f× (≥0.85: %s), CPU/task %.2f×", tr, check(tr >= 0.85), e[1]/g[1]))
		}
		if c, ok := med[key{mode, "baseline"}]; ok && c[0] > 0 && c[1] > 0 {
			parts = append(parts, fmt.Sprintf("gworker/baseline tasks/s %.2f×, CPU/task %.2f×, RSS %.2f×", g[0]/c[0], g[1]/c[1], g[2]/c[2]))
		}
		if c, ok := med[key{mode, "celery"}]; ok && c[0] > 0 {
			tr := g[0] / c[0]
			parts = append(parts, fmt.Sprintf("gworker/celery tasks/s %.3f× (≥5: %s)", tr, check(tr >= 5)),
				fmt.Sprintf("gworker/celery CPU/task %.2f×", g[1]/c[1]))
		}
		parts = append(parts, fmt.Sprintf("gworker peak RSS %.1f MB at -c %d (<50: %s)", g[2], o.conc, check(g[2] < 50)))
		fmt.Fprintf(w, "  %s:\n    %s\n", mode, strings.Join(parts, "\n    "))
	}
}
