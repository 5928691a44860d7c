// Package rmqnode starts private RabbitMQ nodes on loopback ports, for
// tests that inject broker faults (a short consumer_timeout, a node killed
// with SIGKILL, a cluster losing a member) without touching the machine's
// shared broker. It runs the installed rabbitmq-server with every path and
// port of its own: RABBITMQ_NODENAME, RABBITMQ_NODE_PORT,
// RABBITMQ_DIST_PORT, RABBITMQ_MNESIA_BASE, RABBITMQ_LOG_BASE,
// RABBITMQ_CONFIG_FILE and HOME (for the Erlang cookie) all point into a
// directory of the node's own.
package rmqnode

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Paths of the installed server.
const (
	ServerPath = "/usr/lib/rabbitmq/bin/rabbitmq-server"
	CtlPath    = "/usr/lib/rabbitmq/bin/rabbitmqctl"
)

// DefaultStartTimeout bounds how long Start waits for a node to accept
// AMQP connections; a node boots in 10-40 s on a busy machine.
const DefaultStartTimeout = 3 * time.Minute

// Config describes one private node.
type Config struct {
	// Name is the node name before "@localhost", e.g. "gwtimeout1".
	Name string
	// Port is the AMQP port, DistPort the Erlang distribution port; both
	// listen on 127.0.0.1 only.
	Port, DistPort int
	// Home is the directory holding the Erlang cookie; nodes that are to
	// form a cluster must share it. Empty means a directory named after
	// the node in the system's temporary directory, kept between runs so
	// that a node left running by a test that crashed can be stopped.
	Home string
	// Dir is the node's directory (data, logs, configuration). Empty
	// means a new temporary directory, removed by Remove.
	Dir string
	// ConsumerTimeout sets consumer_timeout; zero keeps the default (30
	// minutes). RabbitMQ checks it on every channel tick, so TickInterval
	// should be well below it.
	ConsumerTimeout time.Duration
	// TickInterval sets channel_tick_interval (default 60 s in RabbitMQ).
	TickInterval time.Duration
	// StartTimeout bounds Start; zero means DefaultStartTimeout.
	StartTimeout time.Duration
}

// Node is a private RabbitMQ node started by Start.
type Node struct {
	cfg     Config
	name    string
	ownsDir bool
}

// Start writes the node's configuration and starts it, and returns once
// it accepts AMQP connections (guest/guest, vhost "/") or ctx ends.
func Start(ctx context.Context, cfg Config) (n *Node, err error) {
	if cfg.Name == "" || cfg.Port == 0 || cfg.DistPort == 0 {
		return nil, errors.New("rmqnode: Name, Port and DistPort are required")
	}
	if _, err := os.Stat(ServerPath); err != nil {
		return nil, fmt.Errorf("rmqnode: rabbitmq-server is not installed: %w", err)
	}
	n = &Node{cfg: cfg, name: cfg.Name + "@localhost"}
	if n.cfg.Dir == "" {
		d, derr := os.MkdirTemp("", "rmqnode-"+cfg.Name+"-")
		if derr != nil {
			return nil, derr
		}
		n.cfg.Dir, n.ownsDir = d, true
		defer func() {
			if err != nil { // Start's result
				_ = os.RemoveAll(d)
			}
		}()
	}
	if n.cfg.Home == "" {
		n.cfg.Home = filepath.Join(os.TempDir(), "rmqnode-home-"+cfg.Name)
		if err := os.MkdirAll(n.cfg.Home, 0o700); err != nil {
			return nil, err
		}
	}
	if err := ensureCookie(n.cfg.Home); err != nil {
		return nil, err
	}
	n.stopLeftover(ctx)
	if n.cfg.StartTimeout == 0 {
		n.cfg.StartTimeout = DefaultStartTimeout
	}
	if err := n.writeConfig(); err != nil {
		return nil, err
	}
	if err := n.Launch(ctx); err != nil {
		// It may have started without answering in time: stop it
		// before its directory goes.
		_ = n.Stop(context.Background())
		return nil, err
	}
	return n, nil
}

// ensureCookie writes an Erlang cookie into home unless one is there, so
// that nodes started at the same time with the same home share it. The
// cookie is written to a file of its own and then hard-linked into place,
// which fails when another node got there first: every caller ends up with
// the one cookie that won.
func ensureCookie(home string) error {
	p := filepath.Join(home, ".erlang.cookie")
	if _, err := os.Stat(p); err == nil {
		return nil
	}
	var b [20]byte
	if _, err := rand.Read(b[:]); err != nil {
		return err
	}
	f, err := os.CreateTemp(home, ".erlang.cookie-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	_, err = f.WriteString(strings.ToUpper(hex.EncodeToString(b[:])))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o400)
	}
	if err != nil {
		return err
	}
	if err := os.Link(tmp, p); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return nil
}

// stopLeftover stops a node of the same name left running by an earlier
// run that could not clean up (its distribution port still listens).
func (n *Node) stopLeftover(ctx context.Context) {
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(n.cfg.DistPort)), time.Second)
	if err != nil {
		return
	}
	c.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	_, _ = n.Ctl(ctx, "stop")
}

func (n *Node) writeConfig() error {
	for _, d := range []string{"mnesia", "log"} {
		if err := os.MkdirAll(filepath.Join(n.cfg.Dir, d), 0o755); err != nil {
			return err
		}
	}
	conf := fmt.Sprintf("listeners.tcp.default = 127.0.0.1:%d\nloopback_users = none\n", n.cfg.Port)
	var adv []string
	if n.cfg.ConsumerTimeout > 0 {
		adv = append(adv, fmt.Sprintf("{consumer_timeout, %d}", n.cfg.ConsumerTimeout.Milliseconds()))
	}
	if n.cfg.TickInterval > 0 {
		adv = append(adv, fmt.Sprintf("{channel_tick_interval, %d}", n.cfg.TickInterval.Milliseconds()))
	}
	files := map[string]string{
		"rabbitmq.conf":   conf,
		"advanced.config": "[{rabbit, [" + strings.Join(adv, ", ") + "]}].\n",
		"enabled_plugins": "[].\n",
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(n.cfg.Dir, name), []byte(text), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (n *Node) env() []string {
	d := n.cfg.Dir
	env := []string{
		"HOME=" + n.cfg.Home,
		"RABBITMQ_NODENAME=" + n.name,
		"RABBITMQ_NODE_PORT=" + strconv.Itoa(n.cfg.Port),
		"RABBITMQ_DIST_PORT=" + strconv.Itoa(n.cfg.DistPort),
		"RABBITMQ_MNESIA_BASE=" + filepath.Join(d, "mnesia"),
		"RABBITMQ_LOG_BASE=" + filepath.Join(d, "log"),
		"RABBITMQ_CONFIG_FILE=" + filepath.Join(d, "rabbitmq.conf"),
		"RABBITMQ_ADVANCED_CONFIG_FILE=" + filepath.Join(d, "advanced.config"),
		"RABBITMQ_ENABLED_PLUGINS_FILE=" + filepath.Join(d, "enabled_plugins"),
		"RABBITMQ_PID_FILE=" + filepath.Join(d, "pid"),
		"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel inet_dist_use_interface {127,0,0,1}",
	}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RABBITMQ_") && !strings.HasPrefix(kv, "HOME=") {
			env = append(env, kv)
		}
	}
	return env
}

// Launch starts the node's server again (after Kill or Stop) and waits
// until it accepts AMQP connections.
func (n *Node) Launch(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, ServerPath, "-detached")
	cmd.Env = n.env()
	cmd.Dir = n.cfg.Dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("rmqnode: start %s: %v\n%s", n.name, err, out)
	}
	return n.WaitReady(ctx)
}

// WaitReady waits until the node accepts an AMQP connection.
func (n *Node) WaitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.StartTimeout)
	defer cancel()
	var last error
	for {
		c, err := amqp.DialConfig(n.URL(), amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
		if err == nil {
			c.Close()
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("rmqnode: %s did not accept connections: %w (last error: %v; log: %s)", n.name, ctx.Err(), last, n.LogPath())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Name returns the Erlang node name, e.g. "gwtimeout1@localhost".
func (n *Node) Name() string { return n.name }

// Port returns the node's AMQP port.
func (n *Node) Port() int { return n.cfg.Port }

// URL returns the node's AMQP URL as guest, vhost "/".
func (n *Node) URL() string {
	return "amqp://guest:guest@" + net.JoinHostPort("127.0.0.1", strconv.Itoa(n.cfg.Port)) + "/"
}

// LogPath returns the node's main log file.
func (n *Node) LogPath() string { return filepath.Join(n.cfg.Dir, "log", n.name+".log") }

// Ctl runs rabbitmqctl against the node.
func (n *Node) Ctl(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, CtlPath, append([]string{"-n", n.name}, args...)...)
	cmd.Env = n.env()
	cmd.Dir = n.cfg.Dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("rmqnode: rabbitmqctl %s on %s: %v\n%s", strings.Join(args, " "), n.name, err, out)
	}
	return out, nil
}

// Join makes the node a member of other's cluster (stop_app, join_cluster,
// start_app).
func (n *Node) Join(ctx context.Context, other *Node) error {
	for _, args := range [][]string{{"stop_app"}, {"join_cluster", other.name}, {"start_app"}} {
		if _, err := n.Ctl(ctx, args...); err != nil {
			return err
		}
	}
	return n.WaitReady(ctx)
}

// PID returns the process id of the node's Erlang VM.
func (n *Node) PID() (int, error) {
	b, err := os.ReadFile(filepath.Join(n.cfg.Dir, "pid"))
	if err != nil {
		return 0, fmt.Errorf("rmqnode: %s pid: %w", n.name, err)
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// Kill ends the node's VM with SIGKILL, as a crash would, and waits until
// the process is gone.
func (n *Node) Kill() error {
	pid, err := n.PID()
	if err != nil {
		return err
	}
	if err := killProcess(pid); err != nil {
		return fmt.Errorf("rmqnode: kill %s: %w", n.name, err)
	}
	for i := 0; i < 200; i++ {
		if !processAlive(pid) {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("rmqnode: %s (pid %d) still alive after SIGKILL", n.name, pid)
}

// Stop stops the node (rabbitmqctl stop), killing it when that fails.
func (n *Node) Stop(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, err := n.Ctl(ctx, "stop"); err != nil {
		if pid, perr := n.PID(); perr == nil && processAlive(pid) {
			return n.Kill()
		}
	}
	return nil
}

// Remove stops the node and deletes its directory when Start created it.
func (n *Node) Remove(ctx context.Context) error {
	err := n.Stop(ctx)
	if n.ownsDir {
		if rerr := os.RemoveAll(n.cfg.Dir); rerr != nil && err == nil {
			err = rerr
		}
	}
	return err
}
