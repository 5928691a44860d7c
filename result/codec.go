package result

import (
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/gworker/gworker/protocol"
)

// ErrBadMeta is wrapped by every error DecodeMeta and EncodeMeta return for
// a value that is not a valid task meta.
var ErrBadMeta = errors.New("invalid task meta")

// EncodeMeta returns the JSON value Celery stores for a task result, byte
// for byte as Celery 5.2.6 writes it:
//
//	{"status", "result", "traceback", "children", "date_done",
//	 ["group_id"], ["parent_id"],
//	 [name, args, kwargs, worker, retries, queue when Extended,
//	  [stamped_headers, each stamp when stamped]], "task_id"}
//
// A *protocol.Exception given as Result is written as its exception dict.
// Nil Children are written as [].
func EncodeMeta(m *Meta) ([]byte, error) {
	if m == nil {
		return nil, fmt.Errorf("%w: nil meta", ErrBadMeta)
	}
	// Every backend builds the result's key from the id, and every write
	// passes here: an id that could not name a task (20 kB, a newline,
	// from a signature embedded in some message) is never stored.
	if err := protocol.CheckID(m.TaskID); err != nil {
		return nil, fmt.Errorf("%w: task id: %w", ErrBadMeta, err)
	}
	if m.Status == "" {
		return nil, fmt.Errorf("%w: empty status for task %s", ErrBadMeta, m.TaskID)
	}
	// Written member by member into one buffer, as protocol.MarshalJSON
	// writes a Dict of these members (every member one level deep): no
	// Dict, no boxed values, and one allocation for a typical result.
	b := make([]byte, 0, metaBufSize+len(m.TaskID))
	b = append(b, `{"status": `...)
	b = protocol.AppendJSONString(b, string(m.Status))
	b = append(b, `, "result": `...)
	b, err := member(b, m, StoredResult(m.Status, m.Result))
	if err != nil {
		return nil, err
	}
	b = append(b, `, "traceback": `...)
	b = appendNullString(b, m.Traceback)
	b = append(b, `, "children": `...)
	if m.Children == nil {
		b = append(b, "[]"...)
	} else if b, err = member(b, m, childrenValue(m.Children)); err != nil {
		return nil, err
	}
	b = append(b, `, "date_done": `...)
	if m.DateDone == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '"')
		b = protocol.AppendDateDone(b, *m.DateDone)
		b = append(b, '"')
	}
	if m.GroupID != "" {
		b = append(b, `, "group_id": `...)
		b = protocol.AppendJSONString(b, m.GroupID)
	}
	if m.ParentID != "" {
		b = append(b, `, "parent_id": `...)
		b = protocol.AppendJSONString(b, m.ParentID)
	}
	if m.Extended {
		var args, kwargs any = m.Args, m.Kwargs
		if m.Args == nil {
			args = []any{}
		}
		if m.Kwargs == nil {
			kwargs = map[string]any{}
		}
		b = append(b, `, "name": `...)
		b = appendNullString(b, m.Name)
		b = append(b, `, "args": `...)
		if b, err = member(b, m, args); err != nil {
			return nil, err
		}
		b = append(b, `, "kwargs": `...)
		if b, err = member(b, m, kwargs); err != nil {
			return nil, err
		}
		b = append(b, `, "worker": `...)
		b = appendNullString(b, m.Worker)
		b = append(b, `, "retries": `...)
		b = strconv.AppendInt(b, int64(m.Retries), 10)
		b = append(b, `, "queue": `...)
		b = appendNullString(b, m.Queue)
		if len(m.StampedHeaders) > 0 {
			if b, err = appendStamps(b, m); err != nil {
				return nil, err
			}
		}
	}
	b = append(b, `, "task_id": `...)
	b = protocol.AppendJSONString(b, m.TaskID)
	return append(b, '}'), nil
}

// metaMembers are the members EncodeMeta writes itself; a stamp of one of
// these names is left out rather than written twice.
var metaMembers = []string{"status", "result", "traceback", "children", "date_done", "group_id",
	"parent_id", "name", "args", "kwargs", "worker", "retries", "queue", "stamped_headers", "task_id"}

// appendStamps appends the stamps of an extended meta as Celery 5.5's
// _get_result_meta does: "stamped_headers", then each stamp by name.
func appendStamps(b []byte, m *Meta) ([]byte, error) {
	names := make([]any, len(m.StampedHeaders))
	for i, n := range m.StampedHeaders {
		names[i] = n
	}
	b = append(b, `, "stamped_headers": `...)
	b, err := member(b, m, names)
	if err != nil {
		return nil, err
	}
	seen := make(map[string]bool, len(m.StampedHeaders))
	for _, n := range m.StampedHeaders {
		if seen[n] || slices.Contains(metaMembers, n) {
			continue
		}
		seen[n] = true
		b = append(b, ", "...)
		b = protocol.AppendJSONString(b, n)
		b = append(b, ": "...)
		if b, err = member(b, m, m.Stamps[n]); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// metaBufSize is the buffer EncodeMeta starts with besides the task id:
// enough for a small result with its fixed members.
const metaBufSize = 192

// member appends v as a member of the meta object (one level deep).
func member(b []byte, m *Meta, v any) ([]byte, error) {
	b, err := protocol.AppendJSON(b, v, 1)
	if err != nil {
		return nil, fmt.Errorf("%w: task %s: %w", ErrBadMeta, m.TaskID, err)
	}
	return b, nil
}

// appendNullString appends s as a JSON string, or null when it is empty.
func appendNullString(b []byte, s string) []byte {
	if s == "" {
		return append(b, "null"...)
	}
	return protocol.AppendJSONString(b, s)
}

// DecodeMeta parses a stored task meta written by Celery or by EncodeMeta.
// Values keep their Python types (see the protocol package). A meta without
// "task_id" is accepted (older Celery versions omit it); the caller fills
// TaskID from the key.
func DecodeMeta(data []byte) (*Meta, error) {
	v, err := protocol.UnmarshalJSON(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadMeta, err)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: value is %s, not an object", ErrBadMeta, pyType(v))
	}
	m := &Meta{}
	status, ok := obj["status"].(string)
	if !ok || status == "" {
		return nil, fmt.Errorf("%w: missing or non-string \"status\"", ErrBadMeta)
	}
	m.Status = State(status)
	m.Result = obj["result"]
	if m.TaskID, err = optString(obj, "task_id"); err != nil {
		return nil, err
	}
	if m.Traceback, err = optString(obj, "traceback"); err != nil {
		return nil, err
	}
	switch c := obj["children"].(type) {
	case nil:
	case []any:
		m.Children = c
	default:
		return nil, fmt.Errorf("%w: \"children\" is %s, not a list", ErrBadMeta, pyType(c))
	}
	dd, err := optString(obj, "date_done")
	if err != nil {
		return nil, err
	}
	if dd != "" {
		t, err := protocol.ParseTime(dd)
		if err != nil {
			return nil, fmt.Errorf("%w: date_done %q: %w", ErrBadMeta, dd, err)
		}
		m.DateDone = &t
	}
	if m.GroupID, err = optString(obj, "group_id"); err != nil {
		return nil, err
	}
	if m.ParentID, err = optString(obj, "parent_id"); err != nil {
		return nil, err
	}
	if _, ok := obj["worker"]; ok {
		if _, ok := obj["queue"]; ok {
			m.Extended = true
		}
	}
	if m.Extended {
		if m.Name, err = optString(obj, "name"); err != nil {
			return nil, err
		}
		if m.Worker, err = optString(obj, "worker"); err != nil {
			return nil, err
		}
		if m.Queue, err = optString(obj, "queue"); err != nil {
			return nil, err
		}
		if a, ok := obj["args"].([]any); ok {
			m.Args = a
		}
		if k, ok := obj["kwargs"].(map[string]any); ok {
			m.Kwargs = k
		}
		if r, ok := obj["retries"].(int64); ok {
			m.Retries = int(r)
		}
		if names := protocol.StampNames(obj["stamped_headers"]); len(names) > 0 {
			m.StampedHeaders = names
			m.Stamps = make(map[string]any, len(names))
			for _, n := range names {
				m.Stamps[n] = obj[n]
			}
		}
	}
	return m, nil
}

// StoredResult returns the value Celery stores as the result of a task in
// state s: a *protocol.Exception (or *TaskError) becomes its exception
// dict, and a decoded exception dict of an exceptional state gets Celery's
// key order back (exc_type, exc_message, exc_module). Other values are
// returned unchanged. Backends use it for every place a result is written.
func StoredResult(s State, v any) any {
	switch r := v.(type) {
	case map[string]any:
		if s.Exceptional() {
			return excDict(r)
		}
	case *protocol.Exception:
		if r == nil {
			return nil
		}
		return r.Value()
	case *TaskError:
		if r == nil || r.Exception == nil {
			return nil
		}
		return r.Exception.Value()
	}
	return v
}

// excDict orders an exception dict as Celery writes it; other keys follow
// in sorted order.
func excDict(m map[string]any) any {
	if _, ok := m["exc_type"]; !ok {
		return m
	}
	first := []string{"exc_type", "exc_message", "exc_module"}
	d := make(protocol.Dict, 0, len(m))
	for _, k := range first {
		if v, ok := m[k]; ok {
			d = append(d, protocol.Item{Key: k, Value: v})
		}
	}
	rest := make([]string, 0, len(m))
	for k := range m {
		if !slices.Contains(first, k) {
			rest = append(rest, k)
		}
	}
	slices.Sort(rest)
	for _, k := range rest {
		d = append(d, protocol.Item{Key: k, Value: m[k]})
	}
	return d
}

func childrenValue(c []any) any {
	if c == nil {
		return []any{}
	}
	out := make([]any, len(c))
	for i, v := range c {
		if r, ok := v.(Result); ok {
			out[i] = r.AsTuple()
		} else {
			out[i] = v
		}
	}
	return out
}

func optString(obj map[string]any, key string) (string, error) {
	switch v := obj[key].(type) {
	case nil:
		return "", nil
	case string:
		return v, nil
	default:
		return "", fmt.Errorf("%w: %q is %s, not a string", ErrBadMeta, key, pyType(v))
	}
}

// pyType names the Python type of a decoded value, for error messages.
func pyType(v any) string { return protocol.TypeName(v) }
