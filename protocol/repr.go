package protocol

import (
	"fmt"
	"math"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// ReprMaxLen is the length (in characters) Celery truncates argsrepr and
// kwargsrepr to.
const ReprMaxLen = 1024

// reprMaxLevels is Celery's saferepr nesting limit: deeper containers are
// written as [...], {...} or (...).
const reprMaxLevels = 3

// Repr renders a value as Celery's saferepr does for logs, events and the
// argsrepr/kwargsrepr headers: Python's repr() syntax (None, True, 'text',
// [1, 2.5], {'k': 'v'}, b'bytes'), containers nested deeper than 3 levels
// written as [...], and the whole text cut after about ReprMaxLen
// characters with ", ..." and the closing brackets. Like saferepr, strings
// are quoted with ' and only ' is escaped. Map keys are written sorted; a
// Dict keeps its order.
func Repr(v any) string {
	r := reprState{safe: true, budget: ReprMaxLen}
	r.value(v, 0)
	return r.b.String()
}

// ArgsRepr renders task args as the argsrepr header of a Python client:
// the args tuple, "(2, 2)", "(2,)" or "()".
func ArgsRepr(args []any) string {
	r := reprState{safe: true, budget: ReprMaxLen}
	r.tuple(args, 0)
	return r.b.String()
}

// KwargsRepr renders task kwargs as the kwargsrepr header: "{'y': 3}".
func KwargsRepr(kwargs map[string]any) string {
	if kwargs == nil {
		kwargs = map[string]any{}
	}
	return Repr(kwargs)
}

// PyRepr renders a value exactly as Python's repr() would, with no
// truncation and no nesting limit: strings choose their quotes and escape
// non-printable characters as Python does. It is what exception reprs
// (KeyError('boom')) are made of.
func PyRepr(v any) string {
	r := reprState{budget: -1}
	r.value(v, 0)
	return r.b.String()
}

type reprState struct {
	b       strings.Builder
	safe    bool // saferepr rules: levels, truncation, simple quoting
	budget  int  // characters left; <0: unlimited
	stopped bool
}

// token writes one token of the stream, charging the budget. It returns
// false once the output has been cut.
func (r *reprState) token(s string, truncatable bool) bool {
	if r.stopped {
		return false
	}
	if r.budget == 0 {
		r.b.WriteString(", ...")
		r.stopped = true
		return false
	}
	if truncatable && r.budget > 0 {
		s = pyTruncate(s, r.budget)
	}
	r.b.WriteString(s)
	if r.budget > 0 {
		r.budget -= utf8.RuneCountInString(s)
		if r.budget <= 0 {
			r.budget = 0
		}
	}
	return true
}

// closer writes a closing bracket. Brackets of containers still open are
// written even after the cut; like saferepr, the bracket that meets an
// exhausted budget is the one dropped for ", ...".
func (r *reprState) closer(s string) {
	if r.stopped {
		r.b.WriteString(s)
		return
	}
	r.token(s, false)
}

// pyTruncate is celery.utils.text.truncate: cut at maxlen, back to the
// last space, and add "...".
func pyTruncate(s string, maxlen int) string {
	if utf8.RuneCountInString(s) < maxlen {
		return s
	}
	rs := []rune(s)[:maxlen]
	cut := string(rs)
	if i := strings.LastIndexByte(cut, ' '); i >= 0 {
		cut = cut[:i]
	}
	return cut + "..."
}

func (r *reprState) text(s string) { r.token(s, r.safe) }

func (r *reprState) deep(level int, open, close string) bool {
	if r.safe && level >= reprMaxLevels {
		r.text(open + "..." + close)
		return true
	}
	return false
}

func (r *reprState) seq(n int, level int, open, close string, item func(i int)) {
	if r.deep(level, open, close) {
		return
	}
	r.token(open, false)
	for i := 0; i < n; i++ {
		if i > 0 {
			r.token(", ", false)
		}
		item(i)
	}
	r.closer(close)
}

func (r *reprState) tuple(items []any, level int) {
	if r.deep(level, "(", ")") {
		return
	}
	r.token("(", false)
	for i, it := range items {
		if i > 0 {
			r.token(", ", false)
		}
		r.value(it, level+1)
	}
	if len(items) == 1 {
		r.closer(",)")
	} else {
		r.closer(")")
	}
}

func (r *reprState) dict(keys []string, get func(string) any, level int) {
	if r.deep(level, "{", "}") {
		return
	}
	r.token("{", false)
	for i, k := range keys {
		if i > 0 {
			r.token(", ", false)
		}
		if !r.stopped {
			if r.safe {
				r.token(safeQuote(k, r.budget), false)
			} else {
				r.token(pyQuote(k), false)
			}
		}
		r.token(": ", false)
		r.value(get(k), level+1)
	}
	r.closer("}")
}

func (r *reprState) value(v any, level int) {
	if r.stopped {
		return
	}
	switch x := v.(type) {
	case nil:
		r.text("None")
	case bool:
		if x {
			r.text("True")
		} else {
			r.text("False")
		}
	case string:
		if r.safe {
			r.token(safeQuote(x, r.budget), false)
		} else {
			r.text(pyQuote(x))
		}
	case []byte:
		if r.safe {
			r.token(safeBytes(x, r.budget), false)
		} else {
			r.text(pyBytes(x))
		}
	case int64:
		r.text(strconv.FormatInt(x, 10))
	case int:
		r.text(strconv.Itoa(x))
	case float64:
		r.text(pyFloatStr(x, 64))
	case float32:
		r.text(pyFloatStr(float64(x), 32))
	case *big.Int:
		if x == nil {
			r.text("None")
		} else {
			r.text(x.String())
		}
	case []any:
		r.seq(len(x), level, "[", "]", func(i int) { r.value(x[i], level+1) })
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		r.dict(keys, func(k string) any { return x[k] }, level)
	case Dict:
		keys := make([]string, len(x))
		for i, it := range x {
			keys[i] = it.Key
		}
		r.dict(keys, func(k string) any { v, _ := x.Get(k); return v }, level)
	case time.Time:
		r.text(pyDatetimeRepr(x))
	case *Exception:
		if x == nil {
			r.text("None")
		} else {
			r.text(formatException(x))
		}
	case Signature:
		r.value(x.Value(), level)
	case *Signature:
		if x == nil {
			r.text("None")
		} else {
			r.value(x.Value(), level)
		}
	default:
		r.other(v, level)
	}
}

// other renders any other Go value as Python holds it once it is sent:
// FromGo's rule (a struct is the dict of its json names, a whole float64 is
// 6.0). A value FromGo cannot carry (a channel, a function) is written by
// its String method or Go's %+v.
func (r *reprState) other(v any, level int) {
	if c, err := fromGo(v, level); err == nil {
		r.value(c, level)
		return
	}
	if s, ok := v.(fmt.Stringer); ok {
		r.text(s.String())
		return
	}
	r.text(fmt.Sprintf("%+v", v))
}

// pyFloatStr is Python's str(float).
func pyFloatStr(f float64, bits int) string {
	switch {
	case math.IsNaN(f):
		return "nan"
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	}
	return string(appendPyFloat(nil, f, bits))
}

// safeQuote is saferepr's string form: truncated, ' escaped, quoted.
func safeQuote(s string, budget int) string {
	if budget > 0 {
		s = pyTruncate(s, budget)
	}
	return "'" + strings.ReplaceAll(s, "'", `\'`) + "'"
}

// safeBytes is saferepr's bytes form: b'<utf-8 text>' or b'<hex>'.
func safeBytes(b []byte, budget int) string {
	ell := ""
	if budget > 0 && len(b) > budget {
		b = b[:budget]
		ell = "..."
	}
	if utf8.Valid(b) {
		return "b'" + string(b) + ell + "'"
	}
	return "b'" + fmt.Sprintf("%x", b) + ell + "'"
}

// pyQuote is Python's repr(str).
func pyQuote(s string) string {
	q := byte('\'')
	if strings.IndexByte(s, '\'') >= 0 && strings.IndexByte(s, '"') < 0 {
		q = '"'
	}
	b := make([]byte, 0, len(s)+2)
	b = append(b, q)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, fmt.Sprintf(`\x%02x`, s[i])...)
			i++
			continue
		}
		i += size
		switch {
		case r == '\\':
			b = append(b, '\\', '\\')
		case r == rune(q):
			b = append(b, '\\', q)
		case r == '\n':
			b = append(b, '\\', 'n')
		case r == '\r':
			b = append(b, '\\', 'r')
		case r == '\t':
			b = append(b, '\\', 't')
		case r < 0x20 || r == 0x7f:
			b = append(b, fmt.Sprintf(`\x%02x`, r)...)
		case r < utf8.RuneSelf || unicode.IsPrint(r):
			b = utf8.AppendRune(b, r)
		case r < 0x100:
			b = append(b, fmt.Sprintf(`\x%02x`, r)...)
		case r < 0x10000:
			b = append(b, fmt.Sprintf(`\u%04x`, r)...)
		default:
			b = append(b, fmt.Sprintf(`\U%08x`, r)...)
		}
	}
	return string(append(b, q))
}

// pyBytes is Python's repr(bytes).
func pyBytes(s []byte) string {
	q := byte('\'')
	if slices.Contains(s, '\'') && !slices.Contains(s, '"') {
		q = '"'
	}
	b := []byte{'b', q}
	for _, c := range s {
		switch {
		case c == '\\':
			b = append(b, '\\', '\\')
		case c == q:
			b = append(b, '\\', q)
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '\r':
			b = append(b, '\\', 'r')
		case c == '\t':
			b = append(b, '\\', 't')
		case c < 0x20 || c >= 0x7f:
			b = append(b, fmt.Sprintf(`\x%02x`, c)...)
		default:
			b = append(b, c)
		}
	}
	return string(append(b, q))
}

// pyDatetimeRepr is Python's repr of an aware datetime.
func pyDatetimeRepr(t time.Time) string {
	t = t.UTC()
	var b strings.Builder
	fmt.Fprintf(&b, "datetime.datetime(%d, %d, %d, %d, %d", t.Year(), int(t.Month()), t.Day(), t.Hour(), t.Minute())
	us := t.Nanosecond() / 1000
	if t.Second() != 0 || us != 0 {
		fmt.Fprintf(&b, ", %d", t.Second())
	}
	if us != 0 {
		fmt.Fprintf(&b, ", %d", us)
	}
	b.WriteString(", tzinfo=datetime.timezone.utc)")
	return b.String()
}
