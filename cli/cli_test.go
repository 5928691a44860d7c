package cli

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gworker/gworker/config"
	"github.com/gworker/gworker/internal/version"
)

// parse runs the worker flag parser as runWorker does.
func parse(t *testing.T, args ...string) (config.Config, *workerFlags, []string) {
	t.Helper()
	app := newFakeApp()
	g := &globalFlags{}
	cmd, rest, err := splitCommand(g, args, app.Config())
	if err != nil || cmd != "worker" {
		t.Fatalf("splitCommand(%v) = %q, %v", args, cmd, err)
	}
	cfg := app.Config()
	var out bytes.Buffer
	f, fs, err := parseWorkerFlags(&cfg, g, rest, &out)
	if err != nil {
		t.Fatalf("parseWorkerFlags(%v): %v", args, err)
	}
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg, f, ignoredFlagWarnings(f, g, fs)
}

func TestRabbitMQWorkerFlags(t *testing.T) {
	cfg, _, _ := parse(t, "worker", "--broker", "amqp://u:p@n1//;amqp://u:p@n2//", "--default-queue-type", "quorum",
		"--max-redeliveries", "3", "--broker-heartbeat", "10", "--max-message-size", "65536", "--eta-horizon", "600",
		"--max-message-values", "5000", "--eta-task-limit", "50")
	if cfg.DefaultQueueType != "quorum" || cfg.MaxRedeliveries != 3 || cfg.BrokerHeartbeat != 10*time.Second ||
		cfg.MaxMessageSize != 65536 || cfg.ETAHorizon != 10*time.Minute || cfg.MaxMessageValues != 5000 || cfg.ETATaskLimit != 50 {
		t.Errorf("config: %+v", cfg)
	}
	bad := cfg
	bad.DefaultQueueType = "mirrored"
	if err := bad.WithDefaults().Validate(); !errors.Is(err, config.ErrInvalid) {
		t.Errorf("DefaultQueueType mirrored: %v, want ErrInvalidConfig", err)
	}
}

func TestQueueDeclarationFlags(t *testing.T) {
	cfg, _, warns := parse(t, "worker", "--default-exchange-type", "topic", "--delayed-delivery-queue-type", "classic",
		"--control-queue-exclusive", "--event-queue-durable")
	if cfg.DefaultExchangeType != "topic" || cfg.DelayedDeliveryQueueType != "classic" || !cfg.ControlQueueExclusive || cfg.ControlQueueDurable {
		t.Errorf("config: %+v", cfg)
	}
	if len(warns) != 1 || !strings.Contains(warns[0], "--event-queue-durable") {
		t.Errorf("warnings: %q", warns)
	}
	for _, bad := range []config.Config{{DefaultExchangeType: "headers"}, {DelayedDeliveryQueueType: "stream"},
		{ControlQueueExclusive: true, ControlQueueDurable: true}} {
		if err := bad.WithDefaults().Validate(); !errors.Is(err, config.ErrInvalid) {
			t.Errorf("%+v: %v, want config.ErrInvalid", bad, err)
		}
	}
	app := newFakeApp()
	for _, args := range [][]string{
		{"worker", "--event-queue-durable", "--event-queue-exclusive"},
		{"worker", "--control-queue-durable", "--control-queue-exclusive"},
		{"inspect", "ping", "--control-queue-durable", "--control-queue-exclusive"},
	} {
		var out, errOut bytes.Buffer
		if code := Run(context.Background(), app, args, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "both") {
			t.Errorf("%v: exit %d, stderr %q; want 2 and a reason", args, code, errOut.String())
		}
	}
}

func TestCeleryWorkerCommandLine(t *testing.T) {
	t.Setenv("CELERY_BROKER_URL", "amqp://a:b@h:5672//")
	cfg, f, warns := parse(t, "worker", "-A", "proj", "-P", "prefork", "-Ofair", "--without-gossip", "--without-mingle",
		"--without-heartbeat", "--max-tasks-per-child", "100", "--pidfile", "p", "--logfile", "l",
		"--result-expires", "3600", "-Q", "gojobs,other", "-X", "other", "-c4", "-E", "--time-limit", "30",
		"--soft-time-limit", "20.5", "--autoscale", "10,3", "--heartbeat-interval", "5", "-linfo", "-n", "go@%h",
		"--purge", "--acks-late", "--rate-limit", "tasks.add=10/s", "-B")
	if cfg.ResultExpires != time.Hour || cfg.Concurrency != 10 || !cfg.TaskEvents || !cfg.WithoutGossip ||
		!cfg.WithoutMingle || !cfg.WithoutHeartbeat || cfg.TimeLimit != 30*time.Second ||
		cfg.SoftTimeLimit != 20500*time.Millisecond || cfg.HeartbeatInterval != 5*time.Second || !cfg.Purge ||
		!cfg.AcksLate || cfg.RateLimits["tasks.add"] != "10/s" || cfg.Hostname != "go@%h" {
		t.Errorf("config: %+v", cfg)
	}
	if q := cfg.ConsumedQueues(); len(q) != 1 || q[0] != "gojobs" {
		t.Errorf("queues: %v", q)
	}
	if f.pidfile != "p" || f.logfile != "l" {
		t.Errorf("flags: %+v", f)
	}
	if cfg.ResolvedBrokerURL() != "amqp://a:b@h:5672//" {
		t.Errorf("broker from the environment: %s", cfg.ResolvedBrokerURL())
	}
	joined := strings.Join(warns, "\n")
	for _, w := range []string{"-A proj", "-P prefork", "-O fair", "--max-tasks-per-child", "-B"} {
		if !strings.Contains(joined, w) {
			t.Errorf("no warning for %s in:\n%s", w, joined)
		}
	}
	if len(warns) != 5 {
		t.Errorf("want one warning per ignored flag, got %d:\n%s", len(warns), joined)
	}

	// Celery 5.5's soft shutdown settings.
	cfg, _, _ = parse(t, "worker", "--soft-shutdown-timeout", "2.5", "--enable-soft-shutdown-on-idle")
	if cfg.SoftShutdownTimeout != 2500*time.Millisecond || !cfg.EnableSoftShutdownOnIdle {
		t.Errorf("soft shutdown flags: %v %v", cfg.SoftShutdownTimeout, cfg.EnableSoftShutdownOnIdle)
	}
	if cfg, _, _ = parse(t, "worker"); cfg.EnableSoftShutdownOnIdle != config.DefaultEnableSoftShutdownOnIdle {
		t.Errorf("EnableSoftShutdownOnIdle defaults to %v", cfg.EnableSoftShutdownOnIdle)
	}

	// Global flags before the command; a Go duration for --result-expires;
	// 0 keeps results forever.
	cfg, _, _ = parse(t, "-b", "amqp://x//", "--result-backend", "redis://r/1", "worker", "--result-expires", "90s")
	if cfg.BrokerURL != "amqp://x//" || cfg.ResultBackend != "redis://r/1" || cfg.ResultExpires != 90*time.Second {
		t.Errorf("global flags: %+v", cfg)
	}
	cfg, _, _ = parse(t, "-Q", "a", "--result-expires", "0")
	if cfg.ResultExpires >= 0 {
		t.Errorf("--result-expires 0: %v, want forever", cfg.ResultExpires)
	}
}

func TestCommandLineErrors(t *testing.T) {
	app := newFakeApp()
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"nonsense"}, 2, "unknown command"},
		{[]string{"call"}, 2, "one task name"},
		{[]string{"worker", "-D"}, 2, "--detach is not supported"},
		{[]string{"worker", "-P", "fork"}, 2, "--pool"},
		{[]string{"worker", "--result-expires", "soon"}, 2, "want seconds"},
		{[]string{"worker", "--accept-content", "pickle"}, 2, "never pickle"},
		{[]string{"worker", "--no-such-flag"}, 2, "unknown flag"},
		{[]string{"result"}, 2, "task id"},
	} {
		var out, errOut bytes.Buffer
		code := Run(context.Background(), app, tc.args, &out, &errOut)
		if code != tc.code || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tc.args, code, errOut.String(), tc.code, tc.want)
		}
	}
	var out, errOut bytes.Buffer
	if code := Run(context.Background(), app, []string{"--version"}, &out, &errOut); code != 0 || strings.TrimSpace(out.String()) != version.Version {
		t.Errorf("--version: %d %q", code, out.String())
	}
	out.Reset()
	if code := Run(context.Background(), app, []string{"--help"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "call NAME") {
		t.Errorf("--help: %d %q", code, out.String())
	}
	out.Reset()
	t.Setenv("CELERY_BROKER_URL", "amqp://u:topsecret@h//")
	t.Setenv("CELERY_RESULT_BACKEND", "redis://:topsecret@h/0")
	if code := Run(context.Background(), app, []string{"worker", "--help"}, &out, &errOut); code != 0 ||
		!strings.Contains(out.String(), "--concurrency") || !strings.Contains(out.String(), "--broker") {
		t.Errorf("worker --help: %d %q", code, out.String())
	}
	if strings.Contains(out.String(), "topsecret") {
		t.Errorf("--help shows a password:\n%s", out.String())
	}
}

func TestPidfile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "w.pid")
	release, err := writePidfile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if strings.TrimSpace(string(b)) != strconv.Itoa(os.Getpid()) {
		t.Errorf("pidfile holds %q", b)
	}
	release()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("pidfile not removed: %v", err)
	}
	// A pidfile naming a live process (our parent) is refused; a stale
	// one is replaced.
	os.WriteFile(path, []byte(strconv.Itoa(os.Getppid())+"\n"), 0o644)
	if _, err := writePidfile(path); err == nil || !strings.Contains(err.Error(), "running") {
		t.Errorf("live pidfile: %v", err)
	}
	os.WriteFile(path, []byte("999999999\n"), 0o644)
	release, err = writePidfile(path)
	if err != nil {
		t.Errorf("stale pidfile: %v", err)
	} else {
		release()
	}
}

func TestParseSeconds(t *testing.T) {
	for in, want := range map[string]time.Duration{"3600": time.Hour, "1.5": 1500 * time.Millisecond, "90s": 90 * time.Second, "0": 0} {
		if got, err := parseSeconds(in); err != nil || got != want {
			t.Errorf("%s: %v %v", in, got, err)
		}
	}
	for _, bad := range []string{"-1", "soon", "-2s"} {
		if _, err := parseSeconds(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

// A method celery's command line does not offer is refused before
// anything is sent, with celery's message, and --help lists the methods.
func TestRemoteMethodsAsCelery(t *testing.T) {
	for kind, first := range map[string]string{"inspect": "'report', 'conf'", "control": "'revoke', 'revoke_by_stamped_headers'"} {
		var out, errb bytes.Buffer
		code := Run(context.Background(), newFakeApp(), []string{kind, "bogus"}, &out, &errb)
		if code != 2 || !strings.Contains(errb.String(), "Error: Invalid value for '{") || !strings.Contains(errb.String(), "'bogus' is not one of "+first) {
			t.Errorf("%s bogus: exit %d\n%s", kind, code, errb.String())
		}
		out.Reset()
		if code := Run(context.Background(), newFakeApp(), []string{kind, "--help"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "Methods: ") {
			t.Errorf("%s --help: exit %d\n%s", kind, code, out.String())
		}
	}
}

// A program that embeds gworker names itself: --version gives its version
// with gworker's, and the usage and the banner its name.
func TestAppNameAndVersion(t *testing.T) {
	app := newFakeApp()
	app.cfg.AppName, app.cfg.AppVersion = "mysvc", "1.4.2"
	var out, errOut bytes.Buffer
	if code := Run(context.Background(), app, []string{"--version"}, &out, &errOut); code != 0 || strings.TrimSpace(out.String()) != "1.4.2 (gworker "+version.Version+")" {
		t.Errorf("--version: %d %q", code, out.String())
	}
	out.Reset()
	if code := Run(context.Background(), app, []string{"--help"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "mysvc [global flags] call NAME") || strings.Contains(out.String(), "gworker [global flags]") {
		t.Errorf("--help: %d %q", code, out.String())
	}
	out.Reset()
	printBanner(&out, app.cfg, nil)
	if !strings.Contains(out.String(), ".> app:         mysvc 1.4.2") {
		t.Errorf("banner:\n%s", out.String())
	}
}
