package control

import (
	"fmt"
	"strconv"
	"strings"
)

// ParamKind is the type a positional argument of a command is cast to.
type ParamKind string

// The kinds of positional arguments, as celery's command line casts them.
const (
	KindStr   ParamKind = "str"
	KindInt   ParamKind = "int"
	KindFloat ParamKind = "float"
	KindBool  ParamKind = "bool"
)

// Param is one positional argument of a command as `celery inspect` and
// `celery control` take it on the command line (the signatures of
// Celery's Panel commands).
type Param struct {
	// Name is the argument's name in the command's arguments.
	Name string
	// Kind is what the word is cast to.
	Kind ParamKind
	// Variadic takes every remaining word, as a list of strings.
	Variadic bool
}

// commandParams are the positional arguments of the commands that take
// any; the others take none.
var commandParams = map[string][]Param{
	"active":          {{Name: "safe", Kind: KindBool}},
	"registered":      {{Name: "taskinfoitems", Kind: KindStr, Variadic: true}},
	"query_task":      {{Name: "ids", Kind: KindStr, Variadic: true}},
	"conf":            {{Name: "with_defaults", Kind: KindBool}},
	"revoke":          {{Name: "task_id", Kind: KindStr, Variadic: true}},
	"terminate":       {{Name: "signal", Kind: KindStr}, {Name: "task_id", Kind: KindStr, Variadic: true}},
	"rate_limit":      {{Name: "task_name", Kind: KindStr}, {Name: "rate_limit", Kind: KindStr}},
	"time_limit":      {{Name: "task_name", Kind: KindStr}, {Name: "soft", Kind: KindFloat}, {Name: "hard", Kind: KindFloat}},
	"add_consumer":    {{Name: "queue", Kind: KindStr}, {Name: "exchange", Kind: KindStr}, {Name: "exchange_type", Kind: KindStr}, {Name: "routing_key", Kind: KindStr}},
	"cancel_consumer": {{Name: "queue", Kind: KindStr}},
	"pool_grow":       {{Name: "n", Kind: KindInt}},
	"pool_shrink":     {{Name: "n", Kind: KindInt}},
	"autoscale":       {{Name: "max", Kind: KindInt}, {Name: "min", Kind: KindInt}},

	// Celery 5.3 and later.
	"revoke_by_stamped_headers": {{Name: "headers", Kind: KindStr, Variadic: true}},
}

// The methods `celery inspect` and `celery control` accept, in Celery's
// order; nodes answer more (hello, dump_conf, ...), which the command
// line does not offer.
var (
	inspectMethods = []string{"report", "conf", "query_task", "clock", "ping", "stats", "scheduled", "reserved",
		"active", "revoked", "registered", "objgraph", "memsample", "memdump", "active_queues"}
	controlMethods = []string{"revoke", "revoke_by_stamped_headers", "terminate", "rate_limit", "time_limit", "election", "enable_events",
		"disable_events", "heartbeat", "pool_grow", "pool_shrink", "pool_restart", "autoscale", "shutdown",
		"add_consumer", "cancel_consumer"}
)

// Methods returns the methods Celery's command line offers for kind,
// "inspect" or "control", in Celery's order; nil for another kind.
func Methods(kind string) []string {
	switch kind {
	case "inspect":
		return append([]string(nil), inspectMethods...)
	case "control":
		return append([]string(nil), controlMethods...)
	}
	return nil
}

// castCommands are sent without waiting for replies, as celery does.
var castCommands = map[string]bool{"shutdown": true}

// CommandParams returns the positional arguments of the command method,
// in order; none for a command that takes none or that it does not know.
func CommandParams(method string) []Param {
	return append([]Param(nil), commandParams[method]...)
}

// ExpectsReply reports whether celery's command line waits for replies to
// method (BroadcastOptions.Reply): every command but shutdown, which is
// cast.
func ExpectsReply(method string) bool { return !castCommands[method] }

// ParseArgs turns the words after a command's name on the command line
// (`celery control rate_limit tasks.add 10/s`) into the command's
// arguments, named and cast as CommandParams says. Too many words, or a
// word that is not of its kind, is an error.
func ParseArgs(method string, words []string) (map[string]any, error) {
	out := map[string]any{}
	ps := commandParams[method]
	for i := 0; i < len(words); i++ {
		if i >= len(ps) {
			return nil, fmt.Errorf("%s takes at most %d arguments", method, len(ps))
		}
		p := ps[i]
		if p.Variadic {
			l := make([]any, 0, len(words)-i)
			for _, s := range words[i:] {
				l = append(l, s)
			}
			out[p.Name] = l
			break
		}
		s := words[i]
		switch p.Kind {
		case KindInt:
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%s: %s must be an integer", method, p.Name)
			}
			out[p.Name] = n
		case KindFloat:
			f, err := strconv.ParseFloat(s, 64)
			if err != nil {
				return nil, fmt.Errorf("%s: %s must be a number", method, p.Name)
			}
			out[p.Name] = f
		case KindBool:
			out[p.Name] = s == "1" || strings.EqualFold(s, "true") || strings.EqualFold(s, "yes")
		default:
			out[p.Name] = s
		}
	}
	return out, nil
}
