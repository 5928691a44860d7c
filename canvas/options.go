package canvas

import (
	"fmt"
	"math"
	"math/big"
	"time"

	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/protocol"
)

// producerOptions maps Celery apply_async options, as stored in a
// signature's options, to producer options. Options set to None are
// ignored (Celery dismisses them); unknown options are ignored, as Celery
// passes them to the transport as properties it does not use.
//
// Stamps (the stamped_headers option and the option of each name it
// lists) become the stamped_headers and stamps headers, as Celery 5.5's
// as_task_v2 writes them; a headers option is applied after them, so that
// its keys win, as in Celery.
func producerOptions(opts map[string]any) ([]producer.Option, error) {
	var out []producer.Option
	if h, ok := protocol.StampHeadersFromOptions(opts); ok {
		out = append(out, producer.Headers(h))
	}
	for k, v := range opts {
		if v == nil {
			continue
		}
		o, err := producerOption(k, v)
		if err != nil {
			return nil, fmt.Errorf("%w: option %q: %w", ErrInvalidSignature, k, err)
		}
		if o != nil {
			out = append(out, o)
		}
	}
	return out, nil
}

func producerOption(key string, v any) (producer.Option, error) {
	switch key {
	case "task_id":
		s, err := str(v)
		return producer.TaskID(s), err
	case "reply_to":
		s, err := str(v)
		return producer.ReplyTo(s), err
	case "queue":
		s, err := nameOf(v)
		return producer.Queue(s), err
	case "exchange":
		s, err := nameOf(v)
		return producer.Exchange(s), err
	case "routing_key":
		s, err := str(v)
		return producer.RoutingKey(s), err
	case "countdown":
		d, err := duration(v)
		if err != nil {
			return nil, err
		}
		if d <= 0 {
			// Celery converts only a truthy countdown to an eta.
			return nil, nil
		}
		return producer.Countdown(d), nil
	case "eta":
		t, err := timeOf(v)
		return producer.ETA(t), err
	case "expires":
		if m, ok := v.(map[string]any); ok {
			t, err := timeOf(m)
			return producer.Expires(t), err
		}
		if s, ok := v.(string); ok {
			t, err := protocol.ParseTime(s)
			return producer.Expires(t), err
		}
		if t, ok := v.(time.Time); ok {
			return producer.Expires(t), nil
		}
		d, err := duration(v)
		return producer.ExpiresIn(d), err
	case "priority":
		n, err := integer(v)
		return producer.Priority(n), err
	case "time_limit":
		d, err := duration(v)
		return producer.TimeLimit(d), err
	case "soft_time_limit":
		d, err := duration(v)
		return producer.SoftTimeLimit(d), err
	case "link":
		sigs, err := sigList(v)
		return producer.Link(sigs...), err
	case "link_error":
		sigs, err := sigList(v)
		return producer.LinkError(sigs...), err
	case "chain":
		sigs, err := sigList(v)
		if sigs == nil {
			sigs = []protocol.Signature{}
		}
		return producer.Chain(sigs...), err
	case "chord":
		s, err := toSignature(v)
		return producer.Chord(s), err
	case "group_id":
		s, err := str(v)
		return producer.GroupID(s), err
	case "group_index":
		n, err := integer(v)
		return producer.GroupIndex(n), err
	case "root_id":
		s, err := str(v)
		return producer.RootID(s), err
	case "parent_id":
		s, err := str(v)
		return producer.ParentID(s), err
	case "shadow":
		s, err := str(v)
		return producer.Shadow(s), err
	case "headers":
		h, ok := v.(map[string]any)
		if !ok {
			if d, isDict := v.(protocol.Dict); isDict {
				h, ok = d.Map(), true
			}
		}
		if !ok {
			return nil, fmt.Errorf("headers is %T, not a dict", v)
		}
		return producer.Headers(h), nil
	case "ignore_result":
		b, ok := v.(bool)
		if !ok {
			return nil, fmt.Errorf("ignore_result is %T, not a bool", v)
		}
		return producer.IgnoreResult(b), nil
	case "serializer":
		s, err := str(v)
		return producer.Serializer(s), err
	case "compression":
		s, err := str(v)
		return producer.Compression(s), err
	case "retries":
		n, err := integer(v)
		return producer.Retries(n), err
	}
	return nil, nil
}

func str(v any) (string, error) {
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("%T is not a string", v)
	}
	return s, nil
}

// nameOf reads a queue or exchange given as a name or as kombu's dict form
// with a "name" key.
func nameOf(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case map[string]any:
		return str(x["name"])
	case protocol.Dict:
		n, _ := x.Get("name")
		return str(n)
	}
	return "", fmt.Errorf("%T is not a name", v)
}

func number(v any) (float64, error) {
	switch x := v.(type) {
	case int64:
		return float64(x), nil
	case int:
		return float64(x), nil
	case int32:
		return float64(x), nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return 0, fmt.Errorf("%v is not a finite number", x)
		}
		return x, nil
	case *big.Int:
		return 0, fmt.Errorf("%s is out of range", x)
	case time.Duration:
		return x.Seconds(), nil
	}
	return 0, fmt.Errorf("%T is not a number", v)
}

func duration(v any) (time.Duration, error) {
	f, err := number(v)
	if err != nil {
		return 0, err
	}
	if math.Abs(f) > float64(math.MaxInt64)/float64(time.Second) {
		return 0, fmt.Errorf("%v seconds is out of range", f)
	}
	return time.Duration(f * float64(time.Second)), nil
}

func integer(v any) (int, error) {
	switch x := v.(type) {
	case int64:
		if x > math.MaxInt32 || x < math.MinInt32 {
			return 0, fmt.Errorf("%d is out of range", x)
		}
		return int(x), nil
	case int:
		return x, nil
	case float64:
		if x != math.Trunc(x) || math.Abs(x) > math.MaxInt32 {
			return 0, fmt.Errorf("%v is not an integer", x)
		}
		return int(x), nil
	}
	return 0, fmt.Errorf("%T is not an integer", v)
}

func timeOf(v any) (time.Time, error) {
	switch x := v.(type) {
	case string:
		return protocol.ParseTime(x)
	case time.Time:
		return x, nil
	case map[string]any:
		// kombu 5.3+ writes a datetime inside a signature's options as
		// {"__type__": "datetime", "__value__": isoformat}.
		if s, ok := x["__value__"].(string); ok && x["__type__"] == "datetime" && len(x) == 2 {
			return protocol.ParseTime(s)
		}
	}
	return time.Time{}, fmt.Errorf("%T is not a time", v)
}

// sigList reads a signature or a list of signatures.
func sigList(v any) ([]protocol.Signature, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case []any:
		out := make([]protocol.Signature, 0, len(x))
		for _, e := range x {
			s, err := toSignature(e)
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
		return out, nil
	case []protocol.Signature:
		return x, nil
	}
	s, err := toSignature(v)
	if err != nil {
		return nil, err
	}
	return []protocol.Signature{s}, nil
}

// toSignature reads a signature in any of the forms the package meets: a
// protocol.Signature, a *Signature, the Dict this package writes, or a
// decoded message value.
func toSignature(v any) (protocol.Signature, error) {
	switch x := v.(type) {
	case protocol.Signature:
		return cloneSig(x), nil
	case *protocol.Signature:
		if x == nil {
			break
		}
		return cloneSig(*x), nil
	case *Signature:
		if x == nil {
			break
		}
		return cloneSig(x.Signature), nil
	case protocol.Dict:
		return sigFromDict(x)
	case map[string]any:
		s, err := protocol.SignatureFromValue(x)
		if err != nil {
			return protocol.Signature{}, fmt.Errorf("%w: %w", ErrInvalidSignature, err)
		}
		return cloneSig(s), nil
	}
	return protocol.Signature{}, fmt.Errorf("%w: %T is not a signature", ErrInvalidSignature, v)
}

// sigFromDict reads a signature Dict written by protocol.Signature.Value.
func sigFromDict(d protocol.Dict) (protocol.Signature, error) {
	var s protocol.Signature
	var ok bool
	t, _ := d.Get("task")
	if s.Task, ok = t.(string); !ok {
		return s, fmt.Errorf("%w: task is %T, not a string", ErrInvalidSignature, t)
	}
	if a, _ := d.Get("args"); a != nil {
		if s.Args, ok = a.([]any); !ok {
			return s, fmt.Errorf("%w: args of %s is %T, not a list", ErrInvalidSignature, s.Task, a)
		}
	}
	if k, _ := d.Get("kwargs"); k != nil {
		if s.Kwargs, ok = k.(map[string]any); !ok {
			return s, fmt.Errorf("%w: kwargs of %s is %T, not a dict", ErrInvalidSignature, s.Task, k)
		}
	}
	if o, _ := d.Get("options"); o != nil {
		if s.Options, ok = o.(map[string]any); !ok {
			return s, fmt.Errorf("%w: options of %s is %T, not a dict", ErrInvalidSignature, s.Task, o)
		}
	}
	if st, _ := d.Get("subtask_type"); st != nil {
		if s.SubtaskType, ok = st.(string); !ok {
			return s, fmt.Errorf("%w: subtask_type of %s is %T", ErrInvalidSignature, s.Task, st)
		}
	}
	if im, _ := d.Get("immutable"); im != nil {
		s.Immutable, _ = im.(bool)
	}
	return cloneSig(s), nil
}
