package control_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gworker/gworker/control"
	"github.com/gworker/gworker/worker"
)

// A state file that is not one (empty, truncated, a Python shelve file, too
// large) is set aside with a typed error and the node starts empty: a
// worker that refused to start over it would crash-loop under systemd.
func TestUnreadableStateIsSetAside(t *testing.T) {
	for name, content := range map[string][]byte{
		"empty":     {},
		"truncated": []byte(`{"revoked": {"a": "2026-01-0`),
		"shelve":    append([]byte{0x00, 0x06, 0x15, 0x61, 0x00, 0x00, 0x00, 0x02}, make([]byte, 4096)...),
		"other":     []byte(`[1, 2, 3]`),
		"too large": []byte(`{"revoked": {}, "pad": "` + strings.Repeat("x", control.MaxStateBytes) + `"}`),
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "worker.state")
			if err := os.WriteFile(path, content, 0o600); err != nil {
				t.Fatal(err)
			}
			rs := worker.NewRevokedSet(0, 0)
			n, err := control.LoadState(path, rs)
			var aside *control.StateSetAsideError
			if !errors.As(err, &aside) || n != 0 || len(rs.IDs()) != 0 {
				t.Fatalf("LoadState: %d, %v", n, err)
			}
			if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the unreadable file is still in place: %v", err)
			}
			if b, err := os.ReadFile(aside.Aside); err != nil || len(b) != len(content) {
				t.Errorf("set-aside copy %s: %d bytes, %v", aside.Aside, len(b), err)
			}
			// The next save writes a good file in its place.
			rs.Add("x")
			if err := control.SaveState(path, rs); err != nil {
				t.Fatal(err)
			}
			if n, err := control.LoadState(path, worker.NewRevokedSet(0, 0)); n != 1 || err != nil {
				t.Errorf("reload: %d, %v", n, err)
			}
		})
	}
}

// A revocation time in the future (a clock that was wrong, or a file
// written by hand) counts as now, so the id does not outlive the set's
// expiry.
func TestStateTimesInTheFutureCountAsNow(t *testing.T) {
	path := filepath.Join(t.TempDir(), "worker.state")
	future := time.Now().Add(1000 * time.Hour).UTC().Format(time.RFC3339Nano)
	if err := os.WriteFile(path, []byte(`{"revoked": {"late": "`+future+`"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	rs := worker.NewRevokedSet(0, 0)
	if n, err := control.LoadState(path, rs); n != 1 || err != nil {
		t.Fatalf("LoadState: %d, %v", n, err)
	}
	if at := rs.Entries()["late"]; at.After(time.Now()) {
		t.Errorf("revoked at %v, in the future", at)
	}
}
