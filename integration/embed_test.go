package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/gworker/gworker/internal/testing/testenv"
)

// userProgram is the program a Go service writes to move tasks to Go, as
// the README shows it: it must compile and work unchanged.
const userProgram = `package main

import (
	"context"

	"github.com/gworker/gworker"
)

type Area struct {
	Area float64 ` + "`json:\"area\"`" + `
	Unit string  ` + "`json:\"unit\"`" + `
}

func double(ctx context.Context, x int) (int, error) { return 2 * x, nil }

func area(ctx context.Context, w, h float64) (Area, error) { return Area{Area: w * h, Unit: "cm2"}, nil }

func main() {
	app := gworker.New(gworker.Config{})
	app.MustRegister("tasks.double", double, gworker.Params("x"))
	app.MustRegister("tasks.area", area, gworker.Params("w", "h"))
	app.Main()
}
`

// buildUserProgram builds userProgram in a fresh module that requires
// gworker through a replace directive to this checkout.
func buildUserProgram(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	gomod := "module example.com/mysvc\n\ngo 1.26.0\n\nrequire github.com/gworker/gworker v0.0.0\n\nreplace github.com/gworker/gworker => " + root + "\n"
	for name, content := range map[string]string{"go.mod": gomod, "main.go": userProgram} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.sum"), sum, 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "mysvc")
	for _, args := range [][]string{{"mod", "tidy"}, {"build", "-race", "-o", bin, "."}} {
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %v: %v\n%s", args, err, out)
		}
	}
	return bin
}

// TestEmbeddedAppAsCeleryWorker runs the 20-line user program with a
// celery worker command line taken from a systemd unit: Python Celery
// gets its results, `mysvc call` works, SIGTERM exits 0 and removes the
// pidfile.
func TestEmbeddedAppAsCeleryWorker(t *testing.T) {
	bin := buildUserProgram(t)
	dir := t.TempDir()
	pidfile, logfile := filepath.Join(dir, "w.pid"), filepath.Join(dir, "w.log")
	queue := uniqueQueue(t, "gojobs")
	p := startProgram(t, bin, "worker", "-A", "proj", "-P", "prefork", "-O", "fair", "--without-gossip",
		"--without-mingle", "--without-heartbeat", "--max-tasks-per-child", "100", "--pidfile", pidfile,
		"--logfile", logfile, "--result-expires", "3600", "-Q", queue,
		"-b", env.brokerURL, "--result-backend", backendURL, "-c", "2", "-n", "mysvc-"+testenv.Suffix()+"@%h")
	c := amqpConn(t)
	if !eventually(defaultWait, func() bool { return queueConsumers(t, c, queue) == 1 }) {
		log, _ := os.ReadFile(logfile)
		t.Fatalf("the worker never consumed %s; log:\n%s\nstderr:\n%s", queue, log, p.log())
	}
	if b, err := os.ReadFile(pidfile); err != nil || strings.TrimSpace(string(b)) == "" {
		t.Fatalf("pidfile: %q %v", b, err)
	}

	res := pyClient{}.run(t, "Q = "+pyString(queue)+"\n"+`
emit(kw=call('tasks.double', kwargs={'x': 21}, queue=Q))
emit(integral=call('tasks.double', (3.0,), queue=Q))
emit(fraction=call('tasks.double', (2.5,), queue=Q))
emit(area=call('tasks.area', (3, 2.0), queue=Q))
r = send('tasks.area', (1.5, 4), queue=Q)
v = r.get(timeout=TIMEOUT)
emit(area_type=type(v['area']).__name__, area_repr=repr(v))
`)
	wantValue(t, "double(x=21)", res.outcome(t, "kw"), "42", "int")
	wantValue(t, "double(3.0)", res.outcome(t, "integral"), "6", "int")
	wantExc(t, "double(2.5)", res.outcome(t, "fraction"), "TypeError")
	wantValue(t, "area(3, 2.0)", res.outcome(t, "area"), "{'area': 6.0, 'unit': 'cm2'}", "dict")
	var typ string
	res.get(t, "area_type", &typ)
	if typ != "float" {
		t.Errorf("a whole struct float reached Python as %s", typ)
	}

	out, stderr, code := runProgram(t, bin, 60*time.Second, "-b", env.brokerURL, "--result-backend", backendURL,
		"call", "tasks.double", "--args", "[1]", "--wait", "--timeout", "20", "-Q", queue)
	if code != 0 || strings.TrimSpace(out) != "2" {
		t.Errorf("mysvc call: exit %d, stdout %q, stderr %q", code, out, stderr)
	}

	if err := p.stop(defaultWait); err != nil {
		t.Errorf("SIGTERM: %v (want exit 0)", err)
	}
	if _, err := os.Stat(pidfile); !os.IsNotExist(err) {
		t.Errorf("pidfile left behind: %v", err)
	}
	log, _ := os.ReadFile(logfile)
	for _, want := range []string{"Connected to amqp://guest:**@", " ready.", "-P prefork: gworker runs tasks on goroutines"} {
		if !strings.Contains(string(log), want) {
			t.Errorf("log file lacks %q:\n%s", want, log)
		}
	}
}

// queueConsumers returns how many consumers q has (0 if it does not
// exist yet).
func queueConsumers(t testing.TB, c *amqp.Connection, q string) int {
	t.Helper()
	ch, err := c.Channel()
	if err != nil {
		t.Fatalf("amqp channel: %v", err)
	}
	defer ch.Close()
	st, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
	if err != nil {
		return 0 // not declared yet; the failed declaration closed ch
	}
	return st.Consumers
}
