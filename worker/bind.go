package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"strings"
	"time"

	"github.com/gworker/gworker/protocol"
)

var (
	ctxType   = reflect.TypeOf((*context.Context)(nil)).Elem()
	errType   = reflect.TypeOf((*error)(nil)).Elem()
	timeType  = reflect.TypeOf(time.Time{})
	bigIntPtr = reflect.TypeOf((*big.Int)(nil))
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
		rv, err := convert(v, b.in[i])
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

func mismatch(v any, t reflect.Type) error {
	return fmt.Errorf("must be %s, not %s", goToPyName(t), protocol.TypeName(v))
}

func goToPyName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "int"
	case reflect.Float32, reflect.Float64:
		return "float"
	case reflect.String:
		return "str"
	case reflect.Bool:
		return "bool"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return "bytes"
		}
		return "list"
	case reflect.Map, reflect.Struct:
		return "dict"
	}
	return t.String()
}

// convert turns a decoded Python value into a value of Go type t.
func convert(v any, t reflect.Type) (reflect.Value, error) {
	if t.Kind() == reflect.Interface {
		if v == nil {
			return reflect.Zero(t), nil
		}
		rv := reflect.ValueOf(v)
		if !rv.Type().Implements(t) {
			return reflect.Value{}, mismatch(v, t)
		}
		out := reflect.New(t).Elem()
		out.Set(rv)
		return out, nil
	}
	if t == bigIntPtr {
		switch x := v.(type) {
		case int64:
			return reflect.ValueOf(big.NewInt(x)), nil
		case *big.Int:
			return reflect.ValueOf(new(big.Int).Set(x)), nil
		}
		return reflect.Value{}, mismatch(v, t)
	}
	if t.Kind() == reflect.Pointer {
		if v == nil {
			return reflect.Zero(t), nil
		}
		e, err := convert(v, t.Elem())
		if err != nil {
			return reflect.Value{}, err
		}
		p := reflect.New(t.Elem())
		p.Elem().Set(e)
		return p, nil
	}
	if t == timeType {
		s, ok := v.(string)
		if !ok {
			return reflect.Value{}, mismatch(v, t)
		}
		tm, err := protocol.ParseTime(s)
		if err != nil {
			return reflect.Value{}, fmt.Errorf("must be an ISO 8601 time: %v", err)
		}
		return reflect.ValueOf(tm), nil
	}
	out := reflect.New(t).Elem()
	switch t.Kind() {
	case reflect.Bool:
		b, ok := v.(bool)
		if !ok {
			return reflect.Value{}, mismatch(v, t)
		}
		out.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		i, ok := v.(int64)
		if !ok {
			if n, isInt := v.(int); isInt {
				i, ok = int64(n), true
			}
		}
		if !ok {
			if _, big := v.(*big.Int); big {
				return reflect.Value{}, fmt.Errorf("is out of range for %s", t)
			}
			return reflect.Value{}, mismatch(v, t)
		}
		if out.OverflowInt(i) {
			return reflect.Value{}, fmt.Errorf("is out of range for %s", t)
		}
		out.SetInt(i)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		var u uint64
		switch x := v.(type) {
		case int64:
			if x < 0 {
				return reflect.Value{}, fmt.Errorf("is out of range for %s", t)
			}
			u = uint64(x)
		case *big.Int:
			if x.Sign() < 0 || !x.IsUint64() {
				return reflect.Value{}, fmt.Errorf("is out of range for %s", t)
			}
			u = x.Uint64()
		default:
			return reflect.Value{}, mismatch(v, t)
		}
		if out.OverflowUint(u) {
			return reflect.Value{}, fmt.Errorf("is out of range for %s", t)
		}
		out.SetUint(u)
	case reflect.Float32, reflect.Float64:
		var f float64
		switch x := v.(type) {
		case float64:
			f = x
		case int64:
			f = float64(x)
		case *big.Int:
			f, _ = new(big.Float).SetInt(x).Float64()
		default:
			return reflect.Value{}, mismatch(v, t)
		}
		if t.Kind() == reflect.Float32 && !math.IsInf(f, 0) && !math.IsNaN(f) && math.Abs(f) > math.MaxFloat32 {
			return reflect.Value{}, fmt.Errorf("is out of range for %s", t)
		}
		out.SetFloat(f)
	case reflect.String:
		s, ok := v.(string)
		if !ok {
			return reflect.Value{}, mismatch(v, t)
		}
		out.SetString(s)
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			switch x := v.(type) {
			case []byte:
				out.SetBytes(append([]byte(nil), x...))
				return out, nil
			case string:
				out.SetBytes([]byte(x))
				return out, nil
			}
			return reflect.Value{}, mismatch(v, t)
		}
		list, ok := v.([]any)
		if !ok {
			return reflect.Value{}, mismatch(v, t)
		}
		s := reflect.MakeSlice(t, len(list), len(list))
		for i, e := range list {
			ev, err := convert(e, t.Elem())
			if err != nil {
				return reflect.Value{}, fmt.Errorf("item %d %s", i, err.Error())
			}
			s.Index(i).Set(ev)
		}
		return s, nil
	case reflect.Array:
		list, ok := v.([]any)
		if !ok || len(list) != t.Len() {
			return reflect.Value{}, mismatch(v, t)
		}
		for i, e := range list {
			ev, err := convert(e, t.Elem())
			if err != nil {
				return reflect.Value{}, fmt.Errorf("item %d %s", i, err.Error())
			}
			out.Index(i).Set(ev)
		}
	case reflect.Map:
		if t.Key().Kind() != reflect.String {
			return reflect.Value{}, fmt.Errorf("has unsupported type %s", t)
		}
		m, ok := asMap(v)
		if !ok {
			return reflect.Value{}, mismatch(v, t)
		}
		mv := reflect.MakeMapWithSize(t, len(m))
		for k, e := range m {
			ev, err := convert(e, t.Elem())
			if err != nil {
				return reflect.Value{}, fmt.Errorf("key '%s' %s", k, err.Error())
			}
			mv.SetMapIndex(reflect.ValueOf(k).Convert(t.Key()), ev)
		}
		return mv, nil
	case reflect.Struct:
		if _, ok := asMap(v); !ok {
			return reflect.Value{}, mismatch(v, t)
		}
		data, err := protocol.MarshalJSON(v)
		if err != nil {
			return reflect.Value{}, err
		}
		p := reflect.New(t)
		if err := json.Unmarshal(data, p.Interface()); err != nil {
			return reflect.Value{}, fmt.Errorf("does not fit %s: %v", t, err)
		}
		return p.Elem(), nil
	default:
		return reflect.Value{}, fmt.Errorf("has unsupported type %s", t)
	}
	return out, nil
}

func asMap(v any) (map[string]any, bool) {
	switch m := v.(type) {
	case map[string]any:
		return m, true
	case protocol.Dict:
		return m.Map(), true
	}
	return nil, false
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
		cv, err := convert(vals[i], fv.Type())
		if err != nil {
			return typeError("%s() argument '%s' %s", name, f.name, err.Error())
		}
		fv.Set(cv)
	}
	return nil
}
