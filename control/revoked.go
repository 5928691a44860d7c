package control

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/worker"
)

// RevokedData is a revoked set as Celery's LimitedSet._data travels in a
// hello reply: {id: [monotonic time added, id]}.
func RevokedData(rs *worker.RevokedSet) protocol.Dict {
	now, mono := time.Now(), monotonic()
	out := protocol.Dict{}
	entries := rs.Entries()
	for _, id := range rs.IDs() {
		at, ok := entries[id]
		if !ok {
			continue
		}
		out = append(out, protocol.Item{Key: id, Value: []any{mono - now.Sub(at).Seconds(), id}})
	}
	return out
}

// MergeRevoked adds the ids of another node's revoked set, as Celery's
// LimitedSet.update does with a dict: values are monotonic timestamps, or
// [timestamp, id] pairs. Entries of another form are ignored.
func MergeRevoked(rs *worker.RevokedSet, m map[string]any) int {
	now, mono := time.Now(), monotonic()
	n := 0
	for id, v := range m {
		if l, ok := v.([]any); ok && len(l) > 0 {
			v = l[0]
		}
		var ts float64
		switch x := v.(type) {
		case float64:
			ts = x
		case int64:
			ts = float64(x)
		default:
			continue
		}
		age := time.Duration((mono - ts) * float64(time.Second))
		if age < 0 {
			age = 0
		}
		rs.AddAt(id, now.Add(-age))
		n++
	}
	return n
}

// stateFile is the --statedb format: the revoked ids with the wall-clock
// time each was revoked.
type stateFile struct {
	Revoked map[string]time.Time `json:"revoked"`
}

// LoadState adds the revoked ids saved in path (Celery's --statedb) to rs;
// a missing file is not an error.
func LoadState(path string, rs *worker.RevokedSet) (int, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("control: read state: %w", err)
	}
	var st stateFile
	if err := json.Unmarshal(b, &st); err != nil {
		return 0, fmt.Errorf("control: state file %s: %w", path, err)
	}
	for id, at := range st.Revoked {
		rs.AddAt(id, at)
	}
	return len(st.Revoked), nil
}

// SaveState writes the revoked ids of rs to path, atomically (a temporary
// file renamed over it).
func SaveState(path string, rs *worker.RevokedSet) error {
	b, err := json.Marshal(stateFile{Revoked: rs.Entries()})
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("control: save state: %w", err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("control: save state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("control: save state: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("control: save state: %w", err)
	}
	return nil
}
