package worker

import (
	"context"
	"fmt"
	"reflect"
	"strings"

	"github.com/gworker/gworker/protocol"
)

var (
	ctxType = reflect.TypeOf((*context.Context)(nil)).Elem()
	errType = reflect.TypeOf((*error)(nil)).Elem()
)

// typeError returns a Python TypeError, as Celery reports wrong arity and
// argument types.
func typeError(format string, a ...any) error {
	return protocol.NewException("TypeError", fmt.Sprintf(format, a...))
}

type binder struct {
	name     string // short name for messages, as Python's "add()"
	fn       reflect.Value
	withCtx  bool
	in       []reflect.Type
	params   []string
	defaults map[string]any
	outVal   bool
	outErr   bool
}

func shortName(name string) string {
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		return name[i+1:]
	}
	return name
}

func newBinder(name string, fn any, params []string, defaults map[string]any) (*binder, error) {
	v := reflect.ValueOf(fn)
	if v.Kind() != reflect.Func {
		return nil, fmt.Errorf("worker: task %q: %T is not a function", name, fn)
	}
	t := v.Type()
	if t.IsVariadic() {
		return nil, fmt.Errorf("worker: task %q: variadic functions are not supported", name)
	}
	b := &binder{name: shortName(name), fn: v, defaults: defaults}
	for i := 0; i < t.NumIn(); i++ {
		in := t.In(i)
		if i == 0 && in == ctxType {
			b.withCtx = true
			continue
		}
		b.in = append(b.in, in)
	}
	switch t.NumOut() {
	case 0:
	case 1:
		if t.Out(0) == errType {
			b.outErr = true
		} else {
			b.outVal = true
		}
	case 2:
		if t.Out(1) != errType {
			return nil, fmt.Errorf("worker: task %q: the second result must be error", name)
		}
		b.outVal, b.outErr = true, true
	default:
		return nil, fmt.Errorf("worker: task %q: too many results", name)
	}
	if params != nil && len(params) != len(b.in) {
		return nil, fmt.Errorf("worker: task %q: %d parameter names for %d parameters", name, len(params), len(b.in))
	}
	b.params = params
	for k := range defaults {
		if indexOf(params, k) < 0 {
			return nil, fmt.Errorf("worker: task %q: default for unknown parameter %q", name, k)
		}
	}
	return b, nil
}

func indexOf(s []string, x string) int {
	for i, v := range s {
		if v == x {
			return i
		}
	}
	return -1
}

// resolve maps positional and keyword arguments onto n parameters, with
// Python's rules and messages.
func resolve(name string, params []string, n int, defaults map[string]any, args []any, kwargs map[string]any) ([]any, error) {
	if len(args) > n {
		return nil, typeError("%s() takes %d positional argument%s but %d %s given", name, n, plural(n), len(args), wasWere(len(args)))
	}
	vals := make([]any, n)
	set := make([]bool, n)
	for i, a := range args {
		vals[i], set[i] = a, true
	}
	if len(kwargs) > 0 {
		if params == nil {
			for k := range kwargs {
				return nil, typeError("%s() got an unexpected keyword argument '%s'", name, k)
			}
		}
		for k, v := range kwargs {
			i := indexOf(params, k)
			if i < 0 {
				return nil, typeError("%s() got an unexpected keyword argument '%s'", name, k)
			}
			if set[i] {
				return nil, typeError("%s() got multiple values for argument '%s'", name, k)
			}
			vals[i], set[i] = v, true
		}
	}
	var missing []string
	for i := range vals {
		if set[i] {
			continue
		}
		if params != nil {
			if d, ok := defaults[params[i]]; ok {
				vals[i], set[i] = d, true
				continue
			}
			missing = append(missing, "'"+params[i]+"'")
		} else {
			missing = append(missing, fmt.Sprintf("#%d", i+1))
		}
	}
	if len(missing) > 0 {
		return nil, typeError("%s() missing %d required positional argument%s: %s", name, len(missing), plural(len(missing)), joinPython(missing))
	}
	return vals, nil
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func wasWere(n int) string {
	if n == 1 {
		return "was"
	}
	return "were"
}

// joinPython joins names as Python does: 'x', 'y' and 'z'.
func joinPython(s []string) string {
	switch len(s) {
	case 1:
		return s[0]
	case 2:
		return s[0] + " and " + s[1]
	}
	return strings.Join(s[:len(s)-1], ", ") + " and " + s[len(s)-1]
}

func (b *binder) call(ctx context.Context, args []any, kwargs map[string]any) (any, error) {
	vals, err := resolve(b.name, b.params, len(b.in), b.defaults, args, kwargs)
	if err != nil {
		return nil, err
	}
	in := make([]reflect.Value, 0, len(b.in)+1)
	if b.withCtx {
		in = append(in, reflect.ValueOf(ctx))
	}
	for i, v := range vals {
		rv, err := protocol.ToGo(v, b.in[i])
		if err != nil {
			return nil, typeError("%s() argument '%s' %s", b.name, b.paramName(i), err.Error())
		}
		in = append(in, rv)
	}
	out := b.fn.Call(in)
	var res any
	if b.outVal {
		res = out[0].Interface()
	}
	if b.outErr {
		if e := out[len(out)-1]; !e.IsNil() {
			return nil, e.Interface().(error)
		}
	}
	return res, nil
}

func (b *binder) paramName(i int) string {
	if b.params != nil {
		return b.params[i]
	}
	return fmt.Sprintf("#%d", i+1)
}

type structField struct {
	name  string
	index int
}

func structParams(t reflect.Type) ([]structField, error) {
	var fields []structField
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name := strings.ToLower(f.Name)
		if tag, ok := f.Tag.Lookup("celery"); ok {
			name = strings.Split(tag, ",")[0]
		} else if tag, ok := f.Tag.Lookup("json"); ok {
			if n := strings.Split(tag, ",")[0]; n != "" {
				name = n
			}
		}
		if name == "-" {
			continue
		}
		fields = append(fields, structField{name: name, index: i})
	}
	return fields, nil
}

func bindStruct(task string, v reflect.Value, fields []structField, defaults map[string]any, args []any, kwargs map[string]any) error {
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.name
	}
	name := shortName(task)
	// Fields without a default are optional when the struct is zero-able:
	// a missing argument keeps the field's zero value only if it has a
	// default; otherwise Python's "missing argument" applies.
	vals, err := resolve(name, names, len(fields), defaults, args, kwargs)
	if err != nil {
		return err
	}
	for i, f := range fields {
		fv := v.Field(f.index)
		cv, err := protocol.ToGo(vals[i], fv.Type())
		if err != nil {
			return typeError("%s() argument '%s' %s", name, f.name, err.Error())
		}
		fv.Set(cv)
	}
	return nil
}
