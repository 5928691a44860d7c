package protocol

// The headers that carry a task's stamps (Celery 5.3 and later): the names
// of the stamps, and their values by name. A Celery 5.5 producer writes
// both on every message ("stamped_headers": null and "stamps": {} when the
// task has none); there is no header per stamp.
const (
	HeaderStampedHeaders = "stamped_headers"
	HeaderStamps         = "stamps"
)

// OptionStampedHeaders is the apply_async option (and signature option)
// that names a task's stamps; each stamp's value is the option of that
// name, as Celery's StampingVisitor leaves them in a signature's options.
const OptionStampedHeaders = "stamped_headers"

// StampedHeaders returns the names in the message's stamped_headers header,
// in order, or nil when it has none. A single name is read as a one-name
// list (Celery's maybe_list); entries that are not strings are skipped.
func (m *Message) StampedHeaders() []string {
	if m == nil {
		return nil
	}
	return StampNames(m.Headers[HeaderStampedHeaders])
}

// Stamps returns the message's stamps as Celery's Request.stamps does: the
// value in the stamps header of every name in stamped_headers (nil for a
// name without one). It is nil when the message has no stamped headers.
func (m *Message) Stamps() map[string]any {
	names := m.StampedHeaders()
	if len(names) == 0 {
		return nil
	}
	values, _ := m.Headers[HeaderStamps].(map[string]any)
	out := make(map[string]any, len(names))
	for _, n := range names {
		out[n] = values[n]
	}
	return out
}

// StampNames reads a stamped_headers value: a list of names or a single
// name. Entries that are not text are skipped.
func StampNames(v any) []string {
	switch x := v.(type) {
	case nil:
		return nil
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			if s, ok := asString(e); ok {
				out = append(out, s)
			}
		}
		return out
	case []string:
		return append([]string(nil), x...)
	}
	if s, ok := asString(v); ok {
		return []string{s}
	}
	return nil
}

// StampHeadersFromOptions returns the stamped_headers and stamps headers
// Celery's as_task_v2 writes for a send whose options hold
// OptionStampedHeaders: the names, and each name's option value (nil when
// the option is missing). ok is false when the options name no stamp.
func StampHeadersFromOptions(opts map[string]any) (headers map[string]any, ok bool) {
	names := StampNames(opts[OptionStampedHeaders])
	if len(names) == 0 {
		return nil, false
	}
	list := make([]any, len(names))
	stamps := make(map[string]any, len(names))
	for i, n := range names {
		list[i] = n
		stamps[n] = opts[n]
	}
	return map[string]any{HeaderStampedHeaders: list, HeaderStamps: stamps}, true
}
