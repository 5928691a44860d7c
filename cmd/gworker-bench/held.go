package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/gworker/gworker/producer"
)

// heldOptions are the flags of the held mode.
type heldOptions struct {
	steps          []int
	rounds         int
	amqpBase       string
	vhost          string
	redisURL       string
	gworker        string
	gworkerTags    string
	baseline       string
	metricsAddr    string
	countdown      time.Duration
	settle         time.Duration
	conc, prefetch int
	window         int
	timeout        time.Duration
	jsonOut        string
}

// heldPoint is the worker's memory with held tasks waiting for their
// countdown.
type heldPoint struct {
	Held int `json:"held"`
	// RSSMB is the process's VmRSS, HeapMB the Go heap in use (from its
	// /metrics).
	RSSMB  float64 `json:"rss_mb"`
	HeapMB float64 `json:"heap_inuse_mb"`
}

// heldRun is one worker's run of the held mode.
type heldRun struct {
	Worker string      `json:"worker"`
	Round  int         `json:"round"`
	Points []heldPoint `json:"points"`
	// KBPerTask is the least-squares slope of RSS against held tasks, in
	// KB (1,024 bytes) per task; HeapKBPerTask that of the Go heap in use.
	KBPerTask     float64 `json:"rss_kb_per_task"`
	HeapKBPerTask float64 `json:"heap_kb_per_task"`
	Err           string  `json:"error,omitempty"`
}

// runHeld is the held mode: what a worker's memory grows by per
// ETA/countdown task it holds. For each worker it starts the gworker
// binary on a fresh queue, publishes tasks.add(i, i) with a countdown far
// in the future in steps (by default up to 1,000, 5,000, 10,000 and 20,000
// messages), waits at each step until the worker's tasks_held_eta gauge on
// /metrics says it holds them all, lets it settle and reads its RSS. It
// prints RSS and the Go heap at each step and the per-task slope. The
// worker runs with an ETA task limit and horizon that hold every message.
//
//	go build -o bin/ ./cmd/gworker ./cmd/gworker-bench
//	bin/gworker-bench held -baseline /path/to/older/gworker
func runHeld(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseHeldFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "gworker-bench held:", err)
		return 2
	}
	if err := benchHeld(ctx, o, stdout); err != nil {
		fmt.Fprintln(stderr, "gworker-bench held:", err)
		return 1
	}
	return 0
}

func parseHeldFlags(args []string, stderr io.Writer) (*heldOptions, error) {
	o := &heldOptions{}
	fs := flag.NewFlagSet("gworker-bench held", flag.ContinueOnError)
	fs.SetOutput(stderr)
	steps := fs.String("steps", "1000,5000,10000,20000", "numbers of held tasks at which RSS is read (increasing)")
	fs.IntVar(&o.rounds, "rounds", 1, "rounds; each runs every worker")
	fs.StringVar(&o.amqpBase, "amqp", "amqp://guest:guest@127.0.0.1:5672", "RabbitMQ URL without the vhost")
	fs.StringVar(&o.vhost, "vhost", "", "existing vhost to use; empty creates (and deletes) one with rabbitmqctl")
	fs.StringVar(&o.redisURL, "redis", "redis://127.0.0.1:6379/0", "result backend of the worker (nothing is stored)")
	fs.StringVar(&o.gworker, "gworker", "", "gworker binary; default: next to this program, else built with go build as the Dockerfile builds it (CGO_ENABLED=0)")
	fs.StringVar(&o.gworkerTags, "gworker-tags", "", "build tags of the gworker built when -gworker is not given and none is next to this program")
	fs.StringVar(&o.baseline, "baseline", "", "another gworker binary (e.g. built from an older commit) run as worker \"baseline\" in every round")
	fs.StringVar(&o.metricsAddr, "metrics-addr", "127.0.0.1:9839", "address the worker serves /metrics on (the held count is read there)")
	fs.DurationVar(&o.countdown, "countdown", time.Hour, "countdown of the messages; the worker's ETA horizon is set beyond it")
	fs.DurationVar(&o.settle, "settle", 2*time.Second, "wait after the worker holds a step's tasks before reading its memory")
	fs.IntVar(&o.conc, "c", 16, "worker concurrency")
	fs.IntVar(&o.prefetch, "prefetch-multiplier", 4, "worker prefetch multiplier")
	fs.IntVar(&o.window, "publish-window", 1000, "unconfirmed messages the publisher allows")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Minute, "limit of one worker's run")
	fs.StringVar(&o.jsonOut, "json", "", "also write every run's figures to this file")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	prev := 0
	for _, s := range splitList(*steps) {
		n, err := strconv.Atoi(s)
		if err != nil || n <= prev {
			return nil, fmt.Errorf("-steps %q: want increasing positive numbers", *steps)
		}
		o.steps, prev = append(o.steps, n), n
	}
	if len(o.steps) == 0 || o.rounds < 1 || o.conc < 1 || o.prefetch < 1 || o.window < 1 || o.countdown <= 0 {
		return nil, errors.New("-steps, -rounds, -c, -prefetch-multiplier, -publish-window and -countdown must be positive")
	}
	return o, nil
}

func benchHeld(ctx context.Context, o *heldOptions, stdout io.Writer) (err error) {
	tmp, err := os.MkdirTemp("", "gworker-bench-held-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	vhost := o.vhost
	if vhost == "" {
		vhost = "gworker-bench-held-" + randomHex(4)
		if err := rabbitmqctl(ctx, "add_vhost", vhost); err != nil {
			return err
		}
		defer func() {
			cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if derr := rabbitmqctl(cctx, "delete_vhost", vhost); derr != nil && err == nil {
				err = derr
			}
		}()
		user := "guest"
		if u, _ := url.Parse(o.amqpBase); u != nil && u.User != nil {
			user = u.User.Username()
		}
		if err := rabbitmqctl(ctx, "set_permissions", "-p", vhost, user, ".*", ".*", ".*"); err != nil {
			return err
		}
	}
	brokerURL := strings.TrimRight(o.amqpBase, "/") + "/" + url.PathEscape(vhost)
	conn, err := amqp.Dial(brokerURL)
	if err != nil {
		return fmt.Errorf("RabbitMQ at %s: %w", o.amqpBase, err)
	}
	defer conn.Close()

	bins := map[string]string{}
	workers := []string{"gworker"}
	if bins["gworker"], err = gworkerBinary(ctx, o.gworker, o.gworkerTags, tmp); err != nil {
		return err
	}
	if o.baseline != "" {
		bins["baseline"] = o.baseline
		workers = append(workers, "baseline")
	}
	total := o.steps[len(o.steps)-1]
	fmt.Fprintf(stdout, "gworker-bench held: tasks.add with a countdown of %v held in steps %v, %d round(s), workers %s, -c %d, prefetch multiplier %d\n",
		o.countdown, o.steps, o.rounds, strings.Join(workers, ","), o.conc, o.prefetch)

	var runs []heldRun
	failed := 0
	for r := 1; r <= o.rounds; r++ {
		order := slices.Clone(workers)
		k := (r - 1) % len(order)
		order = append(order[k:], order[:k]...)
		for _, w := range order {
			if ctx.Err() != nil {
				return fmt.Errorf("interrupted: %w", context.Cause(ctx))
			}
			hr := heldOne(ctx, stdout, o, conn, brokerURL, bins[w], w, tmp, r, total)
			runs = append(runs, hr)
			if hr.Err != "" {
				failed++
				fmt.Fprintf(stdout, "  %-8s round %d FAILED: %s\n", w, r, hr.Err)
				continue
			}
			at := ""
			for _, p := range hr.Points {
				if p.Held == 10000 {
					at = fmt.Sprintf(", RSS at 10,000 held %.1f MB", p.RSSMB)
				}
			}
			fmt.Fprintf(stdout, "  %-8s round %d: %.2f KB RSS per held task (Go heap in use %.2f KB)%s\n", w, r, hr.KBPerTask, hr.HeapKBPerTask, at)
		}
	}
	if o.jsonOut != "" {
		b, _ := json.MarshalIndent(runs, "", "  ")
		if err := os.WriteFile(o.jsonOut, b, 0o644); err != nil {
			return err
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d run(s) failed", failed)
	}
	return nil
}

// heldOne runs one worker through the steps.
func heldOne(parent context.Context, stdout io.Writer, o *heldOptions, conn *amqp.Connection, brokerURL, bin, name, logDir string, round, total int) (hr heldRun) {
	hr = heldRun{Worker: name, Round: round}
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)
	ctx, cancelT := context.WithTimeoutCause(ctx, o.timeout, fmt.Errorf("run limit %v reached", o.timeout))
	defer cancelT()
	fail := func(err error) heldRun {
		if c := context.Cause(ctx); c != nil && c != err {
			err = fmt.Errorf("%w (%v)", err, c)
		}
		hr.Err = err.Error()
		return hr
	}
	queue := fmt.Sprintf("bench.held.%s.r%d.%s", name, round, randomHex(3))
	if err := declareQueue(conn, queue); err != nil {
		return fail(err)
	}
	if o.vhost != "" {
		// In a vhost of its own, the queue goes with it: deleting it here
		// waits for the broker to take back every held message first,
		// which a busy RabbitMQ does slowly.
		defer deleteQueue(conn, queue)
	}
	b, err := buildBatch(queue, total, producer.Countdown(o.countdown))
	if err != nil {
		return fail(err)
	}
	spec := workerSpec{name: name, cmd: func(queue string) *exec.Cmd {
		return exec.Command(bin, "worker", "-b", brokerURL, "--result-backend", o.redisURL,
			"-Q", queue, "-c", strconv.Itoa(o.conc), "--prefetch-multiplier", strconv.Itoa(o.prefetch),
			"-l", "WARNING", "--metrics-addr", o.metricsAddr,
			// Every message is held: none reaches the limit or the horizon.
			"--eta-task-limit", strconv.Itoa(total+o.conc*o.prefetch),
			"--eta-horizon", strconv.Itoa(int((o.countdown + time.Hour).Seconds())))
	}}
	p, err := startWorker(spec, queue, logDir, round, "held")
	if err != nil {
		return fail(err)
	}
	defer func() {
		cancel(nil)
		// Handing back thousands of held messages takes a busy broker a
		// while; a slow stop is noted, not a failed measurement.
		if err := p.stop(2 * time.Minute); err != nil {
			fmt.Fprintf(stdout, "  %-8s round %d: %v\n", name, round, err)
		}
	}()
	go func() {
		select {
		case err := <-p.done:
			p.done <- err
			cancel(fmt.Errorf("%s exited early (%v):\n%s", name, err, p.tail()))
		case <-ctx.Done():
		}
	}()
	if err := waitConsumer(ctx, conn, queue); err != nil {
		return fail(fmt.Errorf("%w:\n%s", err, p.tail()))
	}
	metricsURL := "http://" + o.metricsAddr + "/metrics"
	read := func(held int) error {
		if err := sleepCtx(ctx, o.settle); err != nil {
			return err
		}
		m, err := scrape(ctx, metricsURL)
		if err != nil {
			return err
		}
		pt := heldPoint{Held: held, RSSMB: float64(treeRSS(p.pid())) / (1 << 20),
			HeapMB: m["go_memstats_heap_inuse_bytes"] / (1 << 20)}
		hr.Points = append(hr.Points, pt)
		fmt.Fprintf(stdout, "  %-8s round %d: %6d held  RSS %6.1f MB  Go heap in use %6.1f MB\n", name, round, held, pt.RSSMB, pt.HeapMB)
		return nil
	}
	if err := waitHeld(ctx, metricsURL, 0); err != nil {
		return fail(err)
	}
	if err := read(0); err != nil {
		return fail(err)
	}
	done := 0
	for _, step := range o.steps {
		part := &batch{key: b.key, pubs: b.pubs[done:step]}
		if err := publishAll(ctx, conn, part, o.window); err != nil {
			return fail(err)
		}
		done = step
		if err := waitHeld(ctx, metricsURL, step); err != nil {
			return fail(fmt.Errorf("%w:\n%s", err, p.tail()))
		}
		if err := read(step); err != nil {
			return fail(err)
		}
	}
	hr.KBPerTask = slope(hr.Points, func(p heldPoint) float64 { return p.RSSMB }) * 1024
	hr.HeapKBPerTask = slope(hr.Points, func(p heldPoint) float64 { return p.HeapMB }) * 1024
	return hr
}

// slope is the least-squares slope of f(point) against the held count.
func slope(pts []heldPoint, f func(heldPoint) float64) float64 {
	var sx, sy, sxx, sxy float64
	n := float64(len(pts))
	for _, p := range pts {
		x, y := float64(p.Held), f(p)
		sx, sy, sxx, sxy = sx+x, sy+y, sxx+x*x, sxy+x*y
	}
	d := n*sxx - sx*sx
	if d == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / d
}

// waitHeld polls the worker's /metrics until gworker_tasks_held_eta is n.
func waitHeld(ctx context.Context, metricsURL string, n int) error {
	last := -1.0
	for {
		m, err := scrape(ctx, metricsURL)
		if err == nil {
			if v, ok := m["gworker_tasks_held_eta"]; ok {
				if int(v) == n {
					return nil
				}
				last = v
			}
		}
		if err := sleepCtx(ctx, 250*time.Millisecond); err != nil {
			return fmt.Errorf("the worker holds %.0f tasks, not %d: %w", last, n, err)
		}
	}
}

// scrape reads the unlabelled samples of a Prometheus text page.
func scrape(ctx context.Context, u string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", u, resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok || strings.Contains(name, "{") {
			continue
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
			out[name] = v
		}
	}
	return out, sc.Err()
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-time.After(d):
		return nil
	}
}

// heldMain is the held mode's entry point, interrupted by SIGINT/SIGTERM.
func heldMain(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runHeld(ctx, args, os.Stdout, os.Stderr)
}
