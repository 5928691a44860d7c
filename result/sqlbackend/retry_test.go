package sqlbackend_test

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gworker/gworker/internal/testing/testenv"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/result/sqlbackend"
)

// waitRetry waits until the backend logged a retry of op.
func waitRetry(t *testing.T, logs *observer.ObservedLogs, op string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, e := range logs.FilterMessage("result backend operation failed, retrying").All() {
			if e.ContextMap()["op"] == op {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no retry of %q was logged", op)
}

// TestLockTimeoutRetried: a write that runs into a lock timeout (another
// transaction holds the row) is retried until the lock is released, and
// the result is stored.
func TestLockTimeoutRetried(t *testing.T) {
	for _, s := range servers {
		t.Run(s.name, func(t *testing.T) {
			core, logs := observer.New(zapcore.WarnLevel)
			name, db := s.newDatabase(t)
			b, err := sqlbackend.Open(sqlbackend.Config{URL: s.url("db", name), LockTimeout: 200 * time.Millisecond,
				NoBatching: true, Logger: zap.New(core)})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			ctx := testCtx(t)
			id := testenv.UUID()
			if err := b.Store(ctx, &result.Meta{TaskID: id, Status: result.Started}); err != nil {
				t.Fatal(err)
			}
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			q := "SELECT status FROM celery_taskmeta WHERE task_id = ? FOR UPDATE"
			if s.name == "postgresql" {
				q = "SELECT status FROM celery_taskmeta WHERE task_id = $1 FOR UPDATE"
			}
			var st string
			if err := tx.QueryRowContext(ctx, q, id).Scan(&st); err != nil {
				t.Fatal(err)
			}
			stored := make(chan error, 1)
			go func() { stored <- b.Store(ctx, success(id, "after the lock")) }()
			waitRetry(t, logs, "store results")
			select {
			case err := <-stored:
				t.Fatalf("Store returned while the row was locked: %v", err)
			default:
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			if err := <-stored; err != nil {
				t.Fatalf("Store after the lock: %v", err)
			}
			if m, err := b.Get(ctx, id); err != nil || m.Status != result.Success || m.Result != "after the lock" {
				t.Fatalf("stored %+v, %v", m, err)
			}
		})
	}
}

// proxy forwards TCP connections to a server and can be taken down (every
// connection cut, new ones refused) and brought back on the same address,
// as a database restart looks to a client.
type proxy struct {
	t      *testing.T
	target string
	addr   string
	mu     sync.Mutex
	ln     net.Listener
	conns  []net.Conn
	wg     sync.WaitGroup
}

func newProxy(t *testing.T, target string) *proxy {
	p := &proxy{t: t, target: target}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(func() { p.down(); p.wg.Wait() })
	return p
}

func (p *proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			p.wg.Add(2)
			go func() { defer p.wg.Done(); _, _ = io.Copy(s, c); s.Close() }()
			go func() { defer p.wg.Done(); _, _ = io.Copy(c, s); c.Close() }()
		}
	}()
}

// down closes the listener and every connection.
func (p *proxy) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// up listens again on the same address.
func (p *proxy) up() {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatalf("proxy up: %v", err)
	}
	p.serve(ln)
}

// TestServerRestartRetried: while the database is unreachable (its
// connections cut, new ones refused), a Store waits and retries, and
// lands once the server is back; nothing is lost.
func TestServerRestartRetried(t *testing.T) {
	for _, s := range servers {
		t.Run(s.name, func(t *testing.T) {
			name, _ := s.newDatabase(t)
			target := pgHost()
			if s.name == "mysql" {
				target = mysqlHost()
			}
			px := newProxy(t, target)
			url := s.url("db", name)
			url = url[:len(url)-len(target+"/"+name)] + px.addr + "/" + name
			core, logs := observer.New(zapcore.WarnLevel)
			b, err := sqlbackend.Open(sqlbackend.Config{URL: url, Logger: zap.New(core)})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			ctx := testCtx(t)
			first := testenv.UUID()
			if err := b.Store(ctx, success(first, int64(1))); err != nil {
				t.Fatal(err)
			}
			px.down()
			id := testenv.UUID()
			stored := make(chan error, 1)
			go func() { stored <- b.Store(context.Background(), success(id, int64(2))) }()
			waitRetry(t, logs, "store results")
			px.up()
			if err := <-stored; err != nil {
				t.Fatalf("Store across the restart: %v", err)
			}
			for id, want := range map[string]int64{first: 1, id: 2} {
				if m, err := b.Get(ctx, id); err != nil || m.Status != result.Success || m.Result != want {
					t.Fatalf("after the restart %s: %+v, %v", id, m, err)
				}
			}
		})
	}
}
