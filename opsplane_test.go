package gworker

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gworker/gworker/control"
	"github.com/gworker/gworker/gworkertest"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/worker"
)

// refusingTransport routes fanout and direct exchanges in memory, and
// refuses to declare the queue named refuse until allow is called.
type refusingTransport struct {
	mu      sync.Mutex
	refuse  string
	refused int
	specs   []control.QueueSpec
	subs    map[*sub]control.QueueSpec
	kinds   map[string]string
}

var errLocked = errors.New("RESOURCE_LOCKED - cannot obtain exclusive access to locked queue")

type sub struct {
	t    *refusingTransport
	ch   chan *protocol.RawMessage
	once sync.Once
}

func (s *sub) Messages() <-chan *protocol.RawMessage { return s.ch }
func (s *sub) Close() error {
	s.once.Do(func() {
		s.t.mu.Lock()
		delete(s.t.subs, s)
		close(s.ch)
		s.t.mu.Unlock()
	})
	return nil
}

func (t *refusingTransport) allow() {
	t.mu.Lock()
	t.refuse = ""
	t.mu.Unlock()
}

func (t *refusingTransport) DeclareExchange(ctx context.Context, name, kind string, durable bool) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.kinds[name] = kind
	return nil
}

func (t *refusingTransport) Subscribe(ctx context.Context, q control.QueueSpec) (control.Subscription, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.specs = append(t.specs, q)
	if q.Name == t.refuse {
		t.refused++
		return nil, errLocked
	}
	s := &sub{t: t, ch: make(chan *protocol.RawMessage, 100)}
	t.subs[s] = q
	return s, nil
}

func (t *refusingTransport) Publish(ctx context.Context, exchange, key string, msg *protocol.RawMessage) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	for s, q := range t.subs {
		if q.Exchange == exchange && (t.kinds[exchange] == "fanout" || q.RoutingKey == key) {
			cp := *msg
			select {
			case s.ch <- &cp:
			default:
			}
		}
	}
	return nil
}

// A node whose pidbox queue the broker refuses says why at ERROR, lets the
// worker start, and answers remote control once the broker accepts the
// queue; its queues are declared as ControlQueue says.
func TestRefusedPidboxQueue(t *testing.T) {
	const host = "gw@refused"
	tr := &refusingTransport{refuse: control.QueueName(host), subs: map[*sub]control.QueueSpec{}, kinds: map[string]string{}}
	core, logs := observer.New(zap.DebugLevel)
	p, err := newOpsPlane(planeConfig{Transport: tr, Hostname: host, WithoutHeartbeat: true,
		ControlQueue: control.QueueOptions{Exclusive: true}, Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	env := gworkertest.NewEnv(t, gworkertest.Config{Registry: worker.NewRegistry(), Worker: worker.Config{Hostname: host,
		Events: p.Sink(), Revoked: p.Revoked()}})
	if err := env.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.Start(ctx, env.Worker()); err != nil {
		t.Fatalf("Start failed on a refused pidbox queue: %v", err)
	}
	defer func() {
		if err := p.Stop(context.Background()); err != nil {
			t.Error(err)
		}
	}()
	if p.Node() != nil {
		t.Fatal("the node answers although its queue was refused")
	}
	errs := logs.FilterLevelExact(zap.ErrorLevel).All()
	if len(errs) != 1 || errs[0].ContextMap()["error"] != errLocked.Error() || errs[0].ContextMap()["queue"] != control.QueueName(host) {
		t.Fatalf("ERROR lines: %v", errs)
	}
	tr.allow()
	deadline := time.Now().Add(30 * time.Second)
	for p.Node() == nil {
		if time.Now().After(deadline) {
			t.Fatal("the node did not start once the queue was accepted")
		}
		time.Sleep(20 * time.Millisecond)
	}
	client, err := control.NewClient(tr, nil, nil).WithReplyQueue(control.QueueOptions{Exclusive: true})
	if err != nil {
		t.Fatal(err)
	}
	replies, err := client.Broadcast(ctx, "ping", nil, control.BroadcastOptions{Reply: true, Timeout: 5 * time.Second, Limit: 1})
	if err != nil || len(replies) != 1 || replies[0].Node != host {
		t.Fatalf("ping: %v, %v", replies, err)
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, q := range tr.specs {
		if !q.Exclusive || q.Durable {
			t.Errorf("queue %s declared durable=%v exclusive=%v, want exclusive", q.Name, q.Durable, q.Exclusive)
		}
	}
}

func TestControlQueueBothDurableAndExclusive(t *testing.T) {
	tr := &refusingTransport{subs: map[*sub]control.QueueSpec{}, kinds: map[string]string{}}
	_, err := newOpsPlane(planeConfig{Transport: tr, Hostname: "gw@x", ControlQueue: control.QueueOptions{Durable: true, Exclusive: true}})
	if !errors.Is(err, control.ErrConfig) {
		t.Fatalf("New: %v, want control.ErrConfig", err)
	}
}
