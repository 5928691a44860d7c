package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gworker/gworker/internal/testing/testenv"
)

func TestMain(m *testing.M) {
	if os.Getenv(workerEnv) != "" {
		os.Exit(runWorker())
	}
	goleak.VerifyTestMain(m)
}

// The short tier of the chaos suite: every goal must PASS.
func TestChaosShortTier(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	out, err := os.CreateTemp(t.TempDir(), "chaos")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	goals := "G1,G2,G3,G7,G12,G11,G5,G4"
	lines, err := run(ctx, options{n: 200, faults: 2, restarts: 1, outages: 2, down: 5 * time.Second, eta: 20, netFaults: 3, netDown: 2 * time.Second, goals: goals,
		port: 5700, distPort: 25700, redisPort: 6450, redis: testenv.RedisURL()}, out)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range lines {
		t.Log(l.text)
		if !l.pass {
			t.Errorf("goal failed: %s", l.text)
		}
	}
	if want := len(strings.Split(goals, ",")); len(lines) != want {
		t.Fatalf("%d goal lines, want %d", len(lines), want)
	}
}
