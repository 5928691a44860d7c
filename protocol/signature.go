package protocol

// Signature is a task signature (Celery's "subtask") in its dict form:
// {task, args, kwargs, options, subtask_type, immutable}. Canvas objects
// (chain, group, chord) are signatures whose SubtaskType says so.
type Signature struct {
	Task        string
	Args        []any
	Kwargs      map[string]any
	Options     map[string]any
	SubtaskType string // "" (None), "chain", "group", "chord", ...
	Immutable   bool
}

// Value returns the signature as a Dict with Celery's key order.
func (s *Signature) Value() Dict {
	var st any
	if s.SubtaskType != "" {
		st = s.SubtaskType
	}
	args := s.Args
	if args == nil {
		args = []any{}
	}
	kwargs := s.Kwargs
	if kwargs == nil {
		kwargs = map[string]any{}
	}
	opts := s.Options
	if opts == nil {
		opts = map[string]any{}
	}
	return Dict{
		{"task", s.Task},
		{"args", args},
		{"kwargs", kwargs},
		{"options", opts},
		{"subtask_type", st},
		{"immutable", s.Immutable},
	}
}
