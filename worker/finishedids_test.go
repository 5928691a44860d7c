package worker

import "testing"

// The memory of finished tasks is bounded: the oldest key goes first.
func TestFinishedIDsForgetTheOldest(t *testing.T) {
	f := newFinishedIDs(3)
	for _, k := range []string{"a.0", "b.0", "c.0", "a.0", "d.0"} {
		f.add(k)
	}
	for k, want := range map[string]bool{"a.0": false, "b.0": true, "c.0": true, "d.0": true} {
		if f.has(k) != want {
			t.Errorf("has(%q) = %v, want %v", k, !want, want)
		}
	}
	if len(f.keys) != 3 {
		t.Errorf("%d keys, want 3", len(f.keys))
	}
}
