package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// g4Heartbeat is the workers' heartbeat in G4: a blackholed connection is
// given up after 2.5 of them.
const g4Heartbeat = 2 * time.Second

// g4Faults are the network faults G4 draws from, each applied to the
// broker-to-worker direction until it is removed.
var g4Faults = []struct{ name, toxic string }{
	{"reset_peer", `{"name":"fault","type":"reset_peer","stream":"downstream","attributes":{"timeout":0}}`},
	{"blackhole", `{"name":"fault","type":"timeout","stream":"downstream","attributes":{"timeout":0}}`},
	{"latency", `{"name":"fault","type":"latency","stream":"downstream","attributes":{"latency":2000,"jitter":1000}}`},
	{"bandwidth", `{"name":"fault","type":"bandwidth","stream":"downstream","attributes":{"rate":10}}`},
}

// g4 puts an in-process toxiproxy between the worker and the node and
// injects random network faults while the worker drains acks_late tasks:
// lost = 0, re-runs within what the worker held at each fault, the worker
// never exits, and the broker never sees an acknowledgement with a stale
// delivery tag.
func (h *harness) g4(ctx context.Context) (line, error) {
	// The toxics log through zerolog's global logger.
	zerolog.SetGlobalLevel(zerolog.WarnLevel)
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	px := toxiproxy.NewProxy(srv, "amqp", fmt.Sprintf("127.0.0.1:%d", h.o.port+10), fmt.Sprintf("127.0.0.1:%d", h.o.port))
	if err := px.Start(); err != nil {
		return line{}, err
	}
	defer px.Stop()
	h.heartbeat = g4Heartbeat
	defer func() { h.heartbeat = 0 }()
	logStart := int64(0)
	if fi, err := os.Stat(h.node.LogPath()); err == nil {
		logStart = fi.Size()
	}
	broker := strings.Replace(h.node.URL(), fmt.Sprintf(":%d", h.o.port), fmt.Sprintf(":%d", h.o.port+10), 1)
	if broker == h.node.URL() {
		return line{}, fmt.Errorf("cannot route %s through the proxy", h.node.URL())
	}
	r, err := h.open(ctx, "g4")
	if err != nil {
		return line{}, err
	}
	defer r.close()
	if err := r.publish(ctx, h.o.n, work); err != nil {
		return line{}, err
	}
	w, err := h.startOn(r.queue, r.oracle, true, h.o.redis, broker, false)
	if err != nil {
		return line{}, err
	}
	defer func() { w.kill() }()
	kinds := map[string]int{}
	for k := 0; k < h.o.netFaults; k++ {
		time.Sleep(time.Duration(500+rand.IntN(1500)) * time.Millisecond)
		f := g4Faults[rand.IntN(len(g4Faults))]
		kinds[f.name]++
		if _, err := px.Toxics.AddToxicJson(strings.NewReader(f.toxic)); err != nil {
			return line{}, fmt.Errorf("%s: %w", f.name, err)
		}
		time.Sleep(h.o.netDown + time.Duration(rand.IntN(int(h.o.netDown/time.Millisecond)+1))*time.Millisecond)
		if err := px.Toxics.RemoveToxic(ctx, "fault"); err != nil {
			return line{}, err
		}
		if err := w.exitedOnItsOwn(); err != nil {
			return line{}, fmt.Errorf("after %s: %w", f.name, err)
		}
	}
	o, err := waitAllDone(w, r.oracle, len(r.ids), 3*time.Minute)
	if err != nil {
		w.kill()
		return line{}, err
	}
	w.kill()
	stale := 0
	if data, err := os.ReadFile(h.node.LogPath()); err == nil && int64(len(data)) >= logStart {
		stale = strings.Count(string(data[logStart:]), "unknown delivery tag")
	}
	c := o.tally(r.ids)
	bound := h.o.netFaults * concurrency * (1 + prefetchMul)
	var mix []string
	for _, f := range g4Faults {
		mix = append(mix, fmt.Sprintf("%s:%d", f.name, kinds[f.name]))
	}
	pass := c.lost == 0 && c.unexpected == 0 && c.extra <= bound && stale == 0
	return line{fmt.Sprintf("G4 N=%d faults=%d (%s) lost=%d dup=%d extra=%d unexpected=%d bound=%d stale_acks=%d %s",
		h.o.n, h.o.netFaults, strings.Join(mix, ","), c.lost, c.dup, c.extra, c.unexpected, bound, stale, verdict(pass)), pass}, nil
}
