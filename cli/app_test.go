package cli

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/gworker/gworker/config"
	"github.com/gworker/gworker/control"
	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/worker"
)

// fakeApp is an App without a broker: it records what the command line
// asks of it, and its Connect and Start fail or block as a test says.
type fakeApp struct {
	mu         sync.Mutex
	cfg        config.Config
	registry   *worker.Registry
	configured []config.Config
	connectErr error
	start      func(ctx context.Context) error
	stopOnce   sync.Once
	stopped    chan struct{}
}

func newFakeApp() *fakeApp {
	return &fakeApp{cfg: config.Config{}.WithDefaults(), registry: worker.NewRegistry(), stopped: make(chan struct{}),
		connectErr: errors.New("no broker in this test")}
}

var _ App = (*fakeApp)(nil)

func (f *fakeApp) Config() config.Config {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cfg
}

func (f *fakeApp) Configure(cfg config.Config) error {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cfg = cfg
	f.configured = append(f.configured, cfg)
	return nil
}

func (f *fakeApp) lastConfigured(t *testing.T) config.Config {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.configured) != 1 {
		t.Fatalf("Configure called %d times, want once", len(f.configured))
	}
	return f.configured[0]
}

func (f *fakeApp) Registry() *worker.Registry        { return f.registry }
func (f *fakeApp) Connect(ctx context.Context) error { return f.connectErr }
func (f *fakeApp) Close() error                      { return nil }
func (f *fakeApp) SendTask(context.Context, string, []any, map[string]any, ...producer.Option) (*result.AsyncResult, error) {
	return nil, f.connectErr
}
func (f *fakeApp) Backend(context.Context) (result.Backend, error)  { return nil, f.connectErr }
func (f *fakeApp) Control(context.Context) (*control.Client, error) { return nil, f.connectErr }
func (f *fakeApp) Start(ctx context.Context) error {
	if f.start == nil {
		return f.connectErr
	}
	return f.start(ctx)
}
func (f *fakeApp) Stop(context.Context) error {
	f.stopOnce.Do(func() { close(f.stopped) })
	return nil
}
func (f *fakeApp) Stopped() <-chan struct{} { return f.stopped }
func (f *fakeApp) Err() error               { return nil }
func (f *fakeApp) ColdShutdown()            {}

// The worker command applies its flags to the App through Configure, and
// the banner lists the App's queues and tasks.
func TestWorkerConfiguresTheApp(t *testing.T) {
	app := newFakeApp()
	app.registry.MustRegister("tasks.add", func(x, y int) int { return x + y }, worker.Params("x", "y"))
	app.registry.MustRegister("celery.builtin", func() int { return 0 })
	var out, errOut bytes.Buffer
	code := Run(context.Background(), app, []string{"-b", "amqp://u:secret@h//", "worker", "-Q", "a,b", "-c", "3",
		"--statedb", "s.db", "--result-backend", ""}, &out, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), "no broker in this test") {
		t.Errorf("a worker that cannot start: exit %d, stderr %q", code, errOut.String())
	}
	cfg := app.lastConfigured(t)
	if !slices.Equal(cfg.Queues, []string{"a", "b"}) || cfg.Concurrency != 3 || cfg.BrokerURL != "amqp://u:secret@h//" ||
		cfg.StateDB != "s.db" || cfg.ResultBackend != "disabled://" || cfg.Logger == nil {
		t.Errorf("configured: %+v", cfg)
	}
	banner := out.String()
	for _, want := range []string{"amqp://u:**@h//", "disabled://", "concurrency: 3", ".> a ", ".> b ", "  . tasks.add"} {
		if !strings.Contains(banner, want) {
			t.Errorf("banner lacks %q:\n%s", want, banner)
		}
	}
	if strings.Contains(banner, "secret") || strings.Contains(banner, "celery.builtin") {
		t.Errorf("banner shows a password or a builtin:\n%s", banner)
	}
}

// An App that refuses its new Config stops the worker command before it
// starts anything.
func TestWorkerOnAConnectedApp(t *testing.T) {
	app := &refusingApp{fakeApp: newFakeApp()}
	var out, errOut bytes.Buffer
	if code := Run(context.Background(), app, []string{"worker", "-q"}, &out, &errOut); code != 1 ||
		!strings.Contains(errOut.String(), "already connected") {
		t.Errorf("exit %d, stderr %q", code, errOut.String())
	}
}

type refusingApp struct{ *fakeApp }

func (r *refusingApp) Configure(config.Config) error {
	return errors.New("gworker: the App is already connected or started")
}

// A worker still waiting for its broker stops warmly when ctx ends.
func TestWorkerStopsWhileStarting(t *testing.T) {
	app := newFakeApp()
	starting := make(chan struct{})
	app.start = func(ctx context.Context) error {
		close(starting)
		<-ctx.Done()
		return ctx.Err()
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-starting
		cancel()
	}()
	var out, errOut bytes.Buffer
	if code := Run(ctx, app, []string{"worker", "-q"}, &out, &errOut); code != 0 {
		t.Errorf("exit %d, stderr %q; want 0 after a warm shutdown", code, errOut.String())
	}
}

// call, result and inspect apply the connection flags to the App and
// report a broker they cannot reach.
func TestClientCommandsConfigureTheApp(t *testing.T) {
	for _, args := range [][]string{
		{"-b", "redis://h:6379/0", "call", "tasks.add", "--args", "[1, 2]"},
		{"result", "some-id", "-b", "redis://h:6379/0", "--result-backend", "redis://h:6379/1"},
		{"inspect", "ping", "--broker", "redis://h:6379/0"},
	} {
		app := newFakeApp()
		var out, errOut bytes.Buffer
		if code := Run(context.Background(), app, args, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "no broker in this test") {
			t.Errorf("%v: exit %d, stderr %q", args, code, errOut.String())
		}
		if cfg := app.lastConfigured(t); cfg.BrokerURL != "redis://h:6379/0" || cfg.Logger == nil {
			t.Errorf("%v: configured %+v", args, cfg)
		}
	}
}
