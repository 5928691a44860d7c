//go:build unix

package main

// The runner starts the worker in a process group of its own: unix only.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gworker/gworker/internal/testing/testenv"
)

// TestCelerySuite runs Celery's own integration suite (test_canvas.py,
// test_tasks.py, test_inspect.py of each release in shared/celery-suite)
// against this package's worker, one worker start per release, and prints
// per-file counts. Every test that passes against Celery's own worker
// (reference-RELEASE.txt) must pass, except those listed with a reason in
// known-failures-RELEASE.txt; by default only those expected to pass run.
// -short skips it.
//
// Environment:
//
//	CELERYSUITE_DIR       the suite (default: shared/celery-suite beside the checkout)
//	CELERYSUITE_RELEASES  releases to run, comma-separated (default 5.2.6,5.5.3)
//	CELERYSUITE_WORKER    "celery" runs Celery's own worker instead (the reference row)
//	CELERYSUITE_UPDATE    "1" rewrites reference-RELEASE.txt (with the celery worker) or
//	                      known-failures-RELEASE.txt (with gworker) from this run
//	CELERYSUITE_REDIS_DB  Redis database of the result backend (default 9); it is
//	                      flushed before and after each release
//	CELERYSUITE_TIMEOUT   per-test timeout cap in seconds (default 60: the suite's
//	                      results wait up to 60 s)
//	CELERYSUITE_ALL       "1" runs every test against gworker, not only those
//	                      expected to pass
//	CELERYSUITE_K         a pytest -k expression, to run part of the suite
//	CELERYSUITE_SHARED_REDIS "1" runs the 5.5 suite on the shared Redis too (by
//	                      default it gets a private redis-server on port 7651)
//	CELERYSUITE_OUT       a directory to keep each release's worker.log, pytest.out
//	                      and results.tsv in
func TestCelerySuite(t *testing.T) {
	if testing.Short() {
		t.Skip("Celery's integration suite takes minutes; skipped with -short")
	}
	suiteDir := suiteRoot(t)
	py := testenv.Python()
	if out, err := exec.Command(py, "-c", "import pytest, pytest_timeout, pytest_rerunfailures, pytest_subtests, pydantic, celery").CombinedOutput(); err != nil {
		t.Fatalf("%s cannot import pytest and its plugins (%v: %s); run .ci/run, which installs python3-pytest, -timeout, -rerunfailures, -subtests and python3-pydantic",
			py, err, strings.TrimSpace(string(out)))
	}
	releases := []string{"5.2.6", "5.5.3"}
	if v := os.Getenv("CELERYSUITE_RELEASES"); v != "" {
		releases = strings.Split(v, ",")
	}
	bin := ""
	if os.Getenv("CELERYSUITE_WORKER") != "celery" {
		bin = filepath.Join(t.TempDir(), "celerysuite")
		build := exec.Command("go", "build", "-o", bin, ".")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
	}
	for _, rel := range releases {
		t.Run(rel, func(t *testing.T) { runRelease(t, suiteDir, rel, bin) })
	}
}

func suiteRoot(t *testing.T) string {
	if d := os.Getenv("CELERYSUITE_DIR"); d != "" {
		return d
	}
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		p := filepath.Join(dir, "shared", "celery-suite")
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			return p
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("Celery's integration suite is required: set CELERYSUITE_DIR to the directory holding 5.2.6/ and 5.5.3/ (shared/celery-suite)")
		}
		dir = parent
	}
}

func rabbitmqctl(args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return exec.CommandContext(ctx, "rabbitmqctl", args...).CombinedOutput()
}

func runRelease(t *testing.T, suiteDir, rel, bin string) {
	start := time.Now()
	relDir := filepath.Join(suiteDir, rel)
	if _, err := os.Stat(filepath.Join(relDir, "t", "integration", "test_canvas.py")); err != nil {
		t.Fatalf("suite of %s: %v", rel, err)
	}
	pluginDir, err := filepath.Abs("pytest")
	if err != nil {
		t.Fatal(err)
	}
	pythonPath := pluginDir + string(os.PathListSeparator) + relDir
	if strings.HasPrefix(rel, "5.5.") {
		pythonPath += string(os.PathListSeparator) + testenv.Celery55Site(t)
	}

	vhost := "celerysuite-" + testenv.Suffix()
	if out, err := rabbitmqctl("add_vhost", vhost); err != nil {
		t.Fatalf("rabbitmqctl add_vhost: %v\n%s", err, out)
	}
	t.Cleanup(func() { _, _ = rabbitmqctl("delete_vhost", vhost) })
	if out, err := rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"); err != nil {
		t.Fatalf("rabbitmqctl set_permissions: %v\n%s", err, out)
	}
	db := 9
	if v := os.Getenv("CELERYSUITE_REDIS_DB"); v != "" {
		if db, err = strconv.Atoi(v); err != nil {
			t.Fatalf("CELERYSUITE_REDIS_DB: %v", err)
		}
	}
	opts := testenv.RedisOptions(t)
	if strings.HasPrefix(rel, "5.5.") && os.Getenv("CELERYSUITE_SHARED_REDIS") != "1" {
		// Some tests assert that the Redis server has no pub/sub channel
		// open: on the shared server other tests' result waiters would
		// be seen. The 5.5 suite reads REDIS_PORT (5.2.6's does not), so
		// it gets a private server.
		opts.Addr = privateRedis(t)
	}
	opts.DB = db
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { rdb.FlushDB(context.Background()); rdb.Close() })
	if err := rdb.FlushDB(context.Background()).Err(); err != nil {
		t.Fatalf("Redis: %v", err)
	}
	host, port := "127.0.0.1", "6379"
	if h, p, ok := strings.Cut(opts.Addr, ":"); ok {
		host, port = h, p
	}
	broker := "amqp://guest:guest@127.0.0.1:5672/" + vhost
	backend := fmt.Sprintf("redis://%s:%s/%d", host, port, db)
	nodename := "celerysuite-" + testenv.Suffix() + "@localhost"
	env := append(os.Environ(),
		"TEST_BROKER="+broker, "TEST_BACKEND="+backend, "REDIS_HOST="+host, "REDIS_PORT="+port,
		"PYTHONPATH="+pythonPath, "PYTHONDONTWRITEBYTECODE=1", "CELERYSUITE_NODENAME="+nodename)
	extended := strings.HasPrefix(rel, "5.5.") // the 5.5 conftest sets result_extended

	// The worker, started once for the release.
	var worker *exec.Cmd
	if bin == "" {
		worker = exec.Command(testenv.Python(), "-m", "reference_worker", nodename)
		worker.Dir = relDir
		if extended {
			worker.Env = append(env, "CELERYSUITE_RESULT_EXTENDED=1")
		} else {
			worker.Env = env
		}
	} else {
		args := []string{"worker", "-b", broker, "--result-backend", backend, "-n", nodename, "-c", "1", "-l", "INFO"}
		if extended {
			args = append(args, "--result-extended")
		}
		worker = exec.Command(bin, args...)
		worker.Env = env
	}
	outDir := t.TempDir()
	if d := os.Getenv("CELERYSUITE_OUT"); d != "" {
		outDir = filepath.Join(d, rel)
		if err := os.MkdirAll(outDir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	logPath := filepath.Join(outDir, "worker.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	worker.Stdout, worker.Stderr = logf, logf
	worker.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := worker.Start(); err != nil {
		t.Fatalf("start worker: %v", err)
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		_ = syscall.Kill(-worker.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = worker.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = syscall.Kill(-worker.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}
	defer stop()

	// What runs: against gworker, by default, the tests expected to pass
	// (those passing against Celery's worker, less the known failures),
	// so that a failing test's timeouts do not eat the time budget; with
	// CELERYSUITE_UPDATE=1 every test passing against Celery's worker;
	// CELERYSUITE_ALL=1 or CELERYSUITE_K the whole suite.
	refPath := "reference-" + rel + ".txt"
	knownPath := "known-failures-" + rel + ".txt"
	var reference, known map[string]string
	if bin != "" {
		if reference, err = readList(refPath); err != nil {
			t.Fatalf("reference list: %v (record it with CELERYSUITE_WORKER=celery CELERYSUITE_UPDATE=1)", err)
		}
		if known, err = readList(knownPath); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	update := os.Getenv("CELERYSUITE_UPDATE") == "1"
	whole := bin == "" || os.Getenv("CELERYSUITE_ALL") == "1" || os.Getenv("CELERYSUITE_K") != ""
	targets := []string{"t/integration/test_canvas.py", "t/integration/test_tasks.py", "t/integration/test_inspect.py"}
	pytestArgs := []string{"-m", "pytest", "-p", "gworker_suite_plugin", "-p", "celery.contrib.pytest", "-p", "no:cacheprovider",
		"-o", "python_classes=test_*", "-o", "xfail_strict=true"}
	if !whole {
		// In the order pytest collects them, as the reference run ran
		// whole files: tests leave work behind for the next one (four
		// sleeping tasks of test_revoked fill a one-process worker's
		// prefetch window for eight seconds), so another order is another
		// suite.
		order, err := collectOrder(relDir, env, pytestArgs, targets)
		if err != nil {
			t.Fatal(err)
		}
		targets = targets[:0]
		for _, id := range inCollectionOrder(sortedKeys(reference), order) {
			if _, isKnown := known[id]; !isKnown || update {
				targets = append(targets, id)
			}
		}
		t.Logf("running the %d tests of %s not in %s (CELERYSUITE_ALL=1 runs all)", len(targets), refPath, knownPath)
	}

	results := filepath.Join(outDir, "results.tsv")
	timeout := "60"
	if v := os.Getenv("CELERYSUITE_TIMEOUT"); v != "" {
		timeout = v
	}
	pyArgs := append(slices.Clip(pytestArgs), "--timeout="+timeout, "-q", "-rfE", "--color=no")
	runPytest := func(results string, ids []string) []byte {
		args := append(slices.Clip(pyArgs), ids...)
		if k := os.Getenv("CELERYSUITE_K"); k != "" {
			args = append(args, "-k", k)
		}
		pytest := exec.Command(testenv.Python(), args...)
		pytest.Dir = relDir
		pytest.Env = append(env, "CELERYSUITE_RESULTS="+results, "CELERYSUITE_TIMEOUT="+timeout)
		out, _ := pytest.CombinedOutput() // failing tests make a non-zero status
		return out
	}
	out := runPytest(results, targets)
	_ = os.WriteFile(filepath.Join(outDir, "pytest.out"), out, 0o644)
	outcomes, err := readOutcomes(results)
	if err != nil {
		stop()
		t.Fatalf("pytest wrote no results (%v):\n%s", err, tail(string(out), 8000))
	}
	partial := os.Getenv("CELERYSUITE_K") != ""
	if bin != "" && !update && !partial {
		// A second chance, in a pytest of its own, for a few expected
		// tests that failed. Celery marks its timing-bound tests flaky and
		// reruns them in place, but a rerun in place inherits the first
		// attempt's leftovers (test_scheduled's 5 s ETA task is still
		// scheduled 2 s later, so every rerun sees two). A test that fails
		// twice is a regression; one that passes the second time is named
		// in the log.
		var again []string
		for _, id := range inCollectionOrder(sortedKeys(reference), targets) {
			if _, isKnown := known[id]; !isKnown && outcomes[id] != "passed" {
				again = append(again, id)
			}
		}
		if len(again) > 0 && len(again) <= maxSecondChances {
			time.Sleep(secondChanceDelay) // the first attempts' ETA and sleeping tasks run out
			results2 := filepath.Join(outDir, "results-second.tsv")
			out2 := runPytest(results2, again)
			_ = os.WriteFile(filepath.Join(outDir, "pytest-second.out"), out2, 0o644)
			if second, err := readOutcomes(results2); err == nil {
				for _, id := range again {
					if second[id] == "passed" {
						outcomes[id] = "passed"
						t.Logf("passed on a second run, in a pytest of its own (failed the first time: timing-bound): %s", id)
					}
				}
			}
		}
	}
	stop()
	workerName := "gworker"
	if bin == "" {
		workerName = "celery"
	}
	t.Logf("Celery %s against %s: %s (%.0fs)", rel, workerName, countsTable(outcomes), time.Since(start).Seconds())
	t.Logf("pytest summary:\n%s", tail(string(out), 6000))

	if bin == "" {
		if update {
			if err := writeReference(refPath, rel, outcomes); err != nil {
				t.Fatal(err)
			}
		}
		return
	}
	if update {
		if err := writeKnown(knownPath, rel, reference, known, outcomes); err != nil {
			t.Fatal(err)
		}
		return
	}
	var regressions, fixed []string
	for id := range reference {
		if _, ran := outcomes[id]; partial && !ran {
			continue // left out by CELERYSUITE_K
		}
		_, isKnown := known[id]
		switch passed := outcomes[id] == "passed"; {
		case !passed && !isKnown:
			regressions = append(regressions, id+" ("+orNone(outcomes[id])+")")
		case passed && isKnown:
			fixed = append(fixed, id)
		}
	}
	sort.Strings(regressions)
	sort.Strings(fixed)
	if len(fixed) > 0 {
		t.Logf("%d tests of %s now pass and can leave it:\n  %s", len(fixed), knownPath, strings.Join(fixed, "\n  "))
	}
	if len(regressions) > 0 {
		t.Errorf("%d tests pass against Celery's worker but not against gworker and are not in %s:\n  %s\nworker log:\n%s",
			len(regressions), knownPath, strings.Join(regressions, "\n  "), tailFile(logPath, 20000))
	}
}

// At most maxSecondChances failed tests get a second run, after
// secondChanceDelay; more failures than that are not a timing matter.
const (
	maxSecondChances  = 3
	secondChanceDelay = 8 * time.Second
)

func orNone(s string) string {
	if s == "" {
		return "not run"
	}
	return s
}

// readOutcomes reads the plugin's "nodeid<TAB>outcome" lines.
func readOutcomes(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if id, o, ok := strings.Cut(sc.Text(), "\t"); ok {
			out[id] = o
		}
	}
	return out, sc.Err()
}

// readList reads a list file: one test id a line, optionally followed by a
// tab and a reason; # starts a comment line.
func readList(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimRight(line, " \r")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		id, reason, _ := strings.Cut(line, "\t")
		out[id] = reason
	}
	return out, nil
}

func writeReference(path, rel string, outcomes map[string]string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# Tests of Celery %s's integration suite that pass against Celery's own worker\n", rel)
	fmt.Fprintf(&b, "# (prefork, one process), run by TestCelerySuite with CELERYSUITE_WORKER=celery.\n")
	for _, id := range sortedKeys(outcomes) {
		if outcomes[id] == "passed" {
			b.WriteString(id + "\n")
		}
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func writeKnown(path, rel string, reference, known, outcomes map[string]string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# Tests of Celery %s's suite that pass against Celery's worker but not (yet)\n", rel)
	fmt.Fprintf(&b, "# against gworker: test id, a tab, the reason.\n")
	for _, id := range sortedKeys(reference) {
		if outcomes[id] == "passed" {
			continue
		}
		reason := known[id]
		if reason == "" {
			reason = "fails against gworker: " + orNone(outcomes[id])
		}
		b.WriteString(id + "\t" + reason + "\n")
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// collectOrder returns the ids of the tests of files in the order pytest
// collects (and runs) them.
func collectOrder(dir string, env, pytestArgs, files []string) ([]string, error) {
	args := append(slices.Clip(pytestArgs), "--collect-only", "-q", "--color=no")
	cmd := exec.Command(testenv.Python(), append(args, files...)...)
	cmd.Dir = dir
	cmd.Env = env
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("pytest --collect-only: %v\n%s", err, out)
	}
	var ids []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "t/integration/") && strings.Contains(line, "::") {
			ids = append(ids, strings.TrimSpace(line))
		}
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("pytest --collect-only listed no test:\n%s", out)
	}
	return ids, nil
}

// inCollectionOrder orders ids as order has them; ids order does not
// have come last, as they were.
func inCollectionOrder(ids, order []string) []string {
	pos := make(map[string]int, len(order))
	for i, id := range order {
		pos[id] = i
	}
	out := slices.Clone(ids)
	slices.SortStableFunc(out, func(a, b string) int {
		pa, oka := pos[a]
		pb, okb := pos[b]
		switch {
		case oka && okb:
			return pa - pb
		case oka:
			return -1
		case okb:
			return 1
		}
		return 0
	})
	return out
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// countsTable is the per-file counts of outcomes.
func countsTable(outcomes map[string]string) string {
	files := map[string]map[string]int{}
	for id, o := range outcomes {
		file, _, _ := strings.Cut(id, "::")
		file = filepath.Base(file)
		if files[file] == nil {
			files[file] = map[string]int{}
		}
		files[file][o]++
	}
	var b strings.Builder
	names := make([]string, 0, len(files))
	for f := range files {
		names = append(names, f)
	}
	sort.Strings(names)
	for _, f := range names {
		c := files[f]
		fmt.Fprintf(&b, "\n  %-16s passed %3d  failed %3d  error %2d  skipped %2d  xfailed %2d  xpassed %2d",
			f, c["passed"], c["failed"], c["error"], c["skipped"], c["xfailed"], c["xpassed"])
	}
	return b.String()
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

func tailFile(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return tail(string(data), n)
}

// privateRedisPort is the port of the private redis-server of the 5.5
// suite.
const privateRedisPort = "7651"

// privateRedis starts a redis-server of the suite's own, without
// persistence, stopped when t ends, and returns its address.
func privateRedis(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("redis-server", "--port", privateRedisPort, "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", dir)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatalf("redis-server is required (run .ci/run, which installs it): %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := "127.0.0.1:" + privateRedisPort
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("private redis-server on %s: %v", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestInCollectionOrder(t *testing.T) {
	got := inCollectionOrder([]string{"a::x", "b::q", "a::y", "c::new"}, []string{"a::y", "b::q", "a::x"})
	if want := []string{"a::y", "b::q", "a::x", "c::new"}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}
