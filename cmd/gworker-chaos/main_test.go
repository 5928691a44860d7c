package main

import (
	"context"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gworker/gworker/internal/testenv"
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
	lines, err := run(ctx, options{n: 200, faults: 2, restarts: 1, goals: "G1,G3,G7", port: 5684, distPort: 25684,
		redis: testenv.RedisURL()}, out)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range lines {
		t.Log(l.text)
		if !l.pass {
			t.Errorf("goal failed: %s", l.text)
		}
	}
	if len(lines) != 3 {
		t.Fatalf("%d goal lines, want 3", len(lines))
	}
}
