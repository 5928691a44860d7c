package worker

import (
	"testing"
	"time"
)

func TestRateLimitsSpaceStarts(t *testing.T) {
	r := newRateLimits()
	if d := r.reserve("t"); d != 0 {
		t.Fatalf("no limit set: wait %v", d)
	}
	if err := r.set("t", "bad"); err == nil {
		t.Fatal("an invalid limit accepted")
	}
	if err := r.set("t", "1/h"); err != nil {
		t.Fatal(err)
	}
	if d := r.reserve("t"); d != 0 {
		t.Errorf("first start waits %v", d)
	}
	if d := r.reserve("t"); d <= 59*time.Minute {
		t.Errorf("second start within the hour waits %v", d)
	}
	if d := r.reserve("other"); d != 0 {
		t.Errorf("another task waits %v", d)
	}
	if err := r.set("t", ""); err != nil {
		t.Fatal(err)
	}
	if d := r.reserve("t"); d != 0 {
		t.Errorf("removed limit: wait %v", d)
	}
}
