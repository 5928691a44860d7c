package control

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"go.uber.org/zap"

	"github.com/gworker/gworker/protocol"
)

// revokeByStampedHeaders is Celery 5.5's revoke_by_stamped_headers: the
// headers argument is a dict of stamp name to a value or a list of
// values, or, from `celery control revoke_by_stamped_headers k=v ...`, a
// list of "name=value" words. Those values are revoked on the worker (see
// worker.RevokeByStamps); with terminate, running tasks stamped with one
// of them are terminated with signal. The replies are Celery's, word for
// word.
func (n *Node) revokeByStampedHeaders(_ context.Context, a args) (any, error) {
	sig, err := signalName(a["signal"])
	if err != nil {
		return nil, err
	}
	headers, shown, err := stampedHeadersArg(a["headers"])
	if err != nil {
		return nil, err
	}
	terminate := a.boolean("terminate")
	res := n.cfg.Worker.RevokeByStamps(headers, terminate, sig)
	if !terminate {
		return ok("headers " + protocol.PyRepr(shown) + " flagged as revoked, but not terminated"), nil
	}
	if len(res.Matched) == 0 {
		return ok("headers " + protocol.PyRepr(shown) + " were not terminated"), nil
	}
	for _, id := range res.Terminated {
		n.log.Info(fmt.Sprintf("Terminating %s (%s)", id, sig), zap.String("id", id))
	}
	return ok("headers " + setMappingRepr(shown, res.Matched) + " revoked"), nil
}

// keepArgumentOrder gives revoke_by_stamped_headers its headers argument
// with the key order it was sent in, which its replies print (a decoded
// map has none).
func keepArgumentOrder(r *request, body []byte) {
	if r.method != "revoke_by_stamped_headers" {
		return
	}
	if _, isMap := r.arguments["headers"].(map[string]any); !isMap {
		return
	}
	v, err := protocol.UnmarshalJSONOrdered(body)
	if err != nil {
		return
	}
	top, _ := v.(protocol.Dict)
	a, _ := top.Get("arguments")
	args, _ := a.(protocol.Dict)
	if h, ok := args.Get("headers"); ok {
		if d, isDict := h.(protocol.Dict); isDict {
			r.arguments["headers"] = d
		}
	}
}

// stampedHeadersArg reads the headers argument as Celery does: a list of
// "name=value" words becomes {name: value} (the text between the first and
// the second "=" is the value; a later word for the same name wins), a
// dict is taken as it is, and each value revoked is the value or, for a
// list, its elements. shown is the dict as Celery's replies print it: in
// the words' order or the order the dict was sent in (a map, which has
// none, in sorted key order).
func stampedHeadersArg(v any) (headers map[string][]any, shown protocol.Dict, err error) {
	headers = map[string][]any{}
	switch x := v.(type) {
	case []any:
		for _, w := range x {
			s, isStr := w.(string)
			if !isStr {
				return nil, nil, protocol.NewException("AttributeError",
					fmt.Sprintf("'%s' object has no attribute 'split'", pyTypeName(w)))
			}
			parts := strings.Split(s, "=")
			if len(parts) < 2 {
				return nil, nil, protocol.NewException("IndexError", "list index out of range")
			}
			name, value := parts[0], parts[1]
			if i := dictIndex(shown, name); i >= 0 {
				shown[i].Value = value
			} else {
				shown = append(shown, protocol.Item{Key: name, Value: value})
			}
		}
		if shown == nil {
			shown = protocol.Dict{}
		}
	case protocol.Dict:
		shown = x
	case map[string]any:
		names := make([]string, 0, len(x))
		for k := range x {
			names = append(names, k)
		}
		sort.Strings(names)
		shown = make(protocol.Dict, 0, len(names))
		for _, k := range names {
			shown = append(shown, protocol.Item{Key: k, Value: x[k]})
		}
	default:
		return nil, nil, protocol.NewException("AttributeError",
			fmt.Sprintf("'%s' object has no attribute 'items'", pyTypeName(v)))
	}
	for _, it := range shown {
		switch val := it.Value.(type) {
		case nil:
			return nil, nil, protocol.NewException("TypeError", "'NoneType' object is not iterable")
		case []any:
			headers[it.Key] = append(headers[it.Key], val...)
		default:
			headers[it.Key] = append(headers[it.Key], val)
		}
	}
	return headers, shown, nil
}

func dictIndex(d protocol.Dict, key string) int {
	for i, it := range d {
		if it.Key == key {
			return i
		}
	}
	return -1
}

// pyTypeName names v's Python type, for AttributeError messages.
func pyTypeName(v any) string {
	switch v.(type) {
	case nil:
		return "NoneType"
	case bool:
		return "bool"
	case string:
		return "str"
	case int64, int:
		return "int"
	case float64:
		return "float"
	case []any:
		return "list"
	case map[string]any, protocol.Dict:
		return "dict"
	}
	return fmt.Sprintf("%T", v)
}

// setMappingRepr prints the stamps that terminated tasks as Celery's
// reply does, the repr of a defaultdict(set): names in the order of shown,
// the values of each set sorted by their repr (a Python set's order is
// its hashes').
func setMappingRepr(shown protocol.Dict, matched map[string][]any) string {
	var b strings.Builder
	b.WriteString("defaultdict(<class 'set'>, {")
	first := true
	for _, it := range shown {
		vals := matched[it.Key]
		if len(vals) == 0 {
			continue
		}
		if !first {
			b.WriteString(", ")
		}
		first = false
		reprs := make([]string, len(vals))
		for i, v := range vals {
			reprs[i] = protocol.PyRepr(v)
		}
		sort.Strings(reprs)
		b.WriteString(protocol.PyRepr(it.Key) + ": {" + strings.Join(reprs, ", ") + "}")
	}
	b.WriteString("})")
	return b.String()
}
