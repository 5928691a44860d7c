package control

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
	entries := make(map[string]time.Time, len(m))
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
		if protocol.CheckID(id) != nil {
			continue // not an id a task could have
		}
		age := time.Duration((mono - ts) * float64(time.Second))
		if age < 0 {
			age = 0
		}
		entries[id] = now.Add(-age)
	}
	rs.AddAll(entries) // one pass, whatever the size of the merge
	return len(entries)
}

// stateFile is the --statedb format: the revoked ids with the wall-clock
// time each was revoked.
type stateFile struct {
	Revoked map[string]time.Time `json:"revoked"`
}

// MaxStateBytes caps the size of a --statedb file: Celery keeps at most
// 50,000 revoked ids, a few MiB; a larger file is not one gworker wrote.
const MaxStateBytes = 16 << 20

// StateSetAsideError is what LoadState returns for a state file it cannot
// read as one (empty, truncated, too large, or another program's format
// such as a Python shelve file): the file was renamed to Aside and the
// node starts with no revoked ids. It is a warning, not a reason to stop:
// a worker that refused to start over it would crash-loop.
type StateSetAsideError struct {
	Path, Aside string
	Err         error
}

func (e *StateSetAsideError) Error() string {
	return fmt.Sprintf("control: state file %s unreadable (%v); set aside as %s, starting with no revoked ids", e.Path, e.Err, e.Aside)
}

func (e *StateSetAsideError) Unwrap() error { return e.Err }

// LoadState adds the revoked ids saved in path (Celery's --statedb) to rs;
// a missing file is not an error. A file that is not a state file is set
// aside (*StateSetAsideError). Times in the future count as now.
func LoadState(path string, rs *worker.RevokedSet) (int, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("control: read state: %w", err)
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxStateBytes+1))
	f.Close()
	if err != nil {
		return 0, fmt.Errorf("control: read state: %w", err)
	}
	var st stateFile
	switch {
	case len(b) > MaxStateBytes:
		err = fmt.Errorf("larger than %d bytes", MaxStateBytes)
	case len(b) == 0:
		err = errors.New("empty")
	default:
		if err = json.Unmarshal(b, &st); err == nil && st.Revoked == nil {
			err = errors.New(`no "revoked" object`)
		}
	}
	if err != nil {
		aside := fmt.Sprintf("%s.unreadable-%d", path, time.Now().Unix())
		if rerr := os.Rename(path, aside); rerr != nil {
			return 0, fmt.Errorf("control: state file %s unreadable (%v), and setting it aside failed: %w", path, err, rerr)
		}
		return 0, &StateSetAsideError{Path: path, Aside: aside, Err: err}
	}
	now := time.Now()
	for id, at := range st.Revoked {
		if at.After(now) {
			st.Revoked[id] = now
		}
	}
	rs.AddAll(st.Revoked)
	return len(st.Revoked), nil
}

// SaveState writes the revoked ids of rs to path atomically and durably: a
// temporary file, synced, renamed over it, then the directory synced.
func SaveState(path string, rs *worker.RevokedSet) error {
	b, err := json.Marshal(stateFile{Revoked: rs.Entries()})
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("control: save state: %w", err)
	}
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("control: save state: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		// Make the rename itself durable; not every OS can sync a
		// directory, and the file is in place either way.
		_ = d.Sync()
		d.Close()
	}
	return nil
}
