package protocol

import (
	"encoding"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"strconv"
	"strings"
)

// ErrConvert is wrapped by the errors of ToGo: a decoded value that does not
// fit the requested Go type.
var ErrConvert = errors.New("value does not fit the Go type")

// ConvertError is the error of ToGo. Its text reads as the end of Python's
// TypeError messages ("must be int, not str", "item 2 must be float, not
// NoneType", "is out of range for int8"), so a caller prefixes what the
// value is: "add() argument 'x' " for a task argument.
type ConvertError struct {
	Path string // where in the value, "" or e.g. "item 2 " or "key 'a' "
	Msg  string // what is wrong
}

func (e *ConvertError) Error() string { return e.Path + e.Msg }

// Unwrap returns ErrConvert.
func (e *ConvertError) Unwrap() error { return ErrConvert }

func convertErr(format string, a ...any) error {
	return &ConvertError{Msg: fmt.Sprintf(format, a...)}
}

func mismatch(v any, t reflect.Type) error {
	return convertErr("must be %s, not %s", PyTypeName(t), TypeName(v))
}

func outOfRange(t reflect.Type) error {
	return convertErr("is out of range for %s", t)
}

// within prefixes the path of an error met inside a container.
func within(err error, path string) error {
	var ce *ConvertError
	if errors.As(err, &ce) {
		return &ConvertError{Path: path + ce.Path, Msg: ce.Msg}
	}
	return &ConvertError{Path: path, Msg: err.Error()}
}

// PyTypeName names the Python type that converts to Go type t ("int",
// "float", "str", "bytes", "list", "dict", "bool"), for messages; other
// types are named by their Go type.
func PyTypeName(t reflect.Type) string {
	switch t {
	case timeType:
		return "str"
	case bigIntPtrType:
		return "int"
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
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
	case reflect.Array:
		return "list"
	case reflect.Map, reflect.Struct:
		return "dict"
	case reflect.Pointer:
		return PyTypeName(t.Elem())
	}
	return t.String()
}

var (
	jsonUnmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// ToGo converts a decoded Python value (the package's value types: nil,
// bool, int64, *big.Int, float64, string, []byte, []any, map[string]any,
// Dict) into a value of Go type t. It is the one rule for task arguments
// and for reading results, the inverse of FromGo:
//
//   - an integer kind takes an int, or a float that is integral (3.0, as a
//     JSON peer may write 3); 2.5, NaN or a value out of the kind's range
//     is refused; bool is not an int;
//   - a float kind takes a float or an int (float32 must hold it);
//   - a string takes a str; []byte takes bytes, a str, or bytes as kombu
//     5.3+ writes them in JSON ({"__type__": "bytes" or "base64",
//     "__value__": str}); bool a bool;
//   - a slice takes a list (item by item), an array a list of its length,
//     a map with string or integer keys a dict, a struct a dict by the
//     names FromGo writes (json tags, embedded structs; an exact name, else
//     one differing in case; other keys are ignored);
//   - None is the nil of a pointer, slice, map or interface; a pointer
//     otherwise takes what its element takes;
//   - time.Time takes an ISO 8601 str (ParseTime); *big.Int an int;
//     interfaces take the value as it is when it implements them;
//   - a type with an UnmarshalJSON method gets the value's JSON, one with
//     an UnmarshalText method (and no UnmarshalJSON) a str.
//
// Errors are *ConvertError, wrapping ErrConvert.
func ToGo(v any, t reflect.Type) (reflect.Value, error) {
	return toGo(v, t, 0)
}

func toGo(v any, t reflect.Type, depth int) (reflect.Value, error) {
	if depth > MaxJSONDepth {
		return reflect.Value{}, convertErr("is nested deeper than %d", MaxJSONDepth)
	}
	// Fast path: the value already has the type (str to string, float to
	// float64, int to int64, list to []any...).
	if v != nil && reflect.TypeOf(v) == t {
		return reflect.ValueOf(v), nil
	}
	out := reflect.New(t).Elem()
	if err := assign(v, out, depth); err != nil {
		return reflect.Value{}, err
	}
	return out, nil
}

// assign converts v into dst, a settable value.
func assign(v any, dst reflect.Value, depth int) error {
	if depth > MaxJSONDepth {
		return convertErr("is nested deeper than %d", MaxJSONDepth)
	}
	t := dst.Type()
	if v != nil && reflect.TypeOf(v) == t {
		dst.Set(reflect.ValueOf(v))
		return nil
	}
	switch t {
	case timeType:
		s, ok := v.(string)
		if !ok {
			return mismatch(v, t)
		}
		tm, err := ParseTime(s)
		if err != nil {
			return convertErr("must be an ISO 8601 time: %v", err)
		}
		dst.Set(reflect.ValueOf(tm))
		return nil
	case bigIntPtrType:
		if v == nil {
			dst.SetZero()
			return nil
		}
		b, err := bigValue(v, t)
		if err != nil {
			return err
		}
		dst.Set(reflect.ValueOf(b))
		return nil
	}
	if t.Kind() == reflect.Interface {
		if v == nil {
			dst.SetZero()
			return nil
		}
		rv := reflect.ValueOf(v)
		if !rv.Type().Implements(t) {
			return mismatch(v, t)
		}
		dst.Set(rv)
		return nil
	}
	if v == nil {
		switch t.Kind() {
		case reflect.Pointer, reflect.Slice, reflect.Map:
			dst.SetZero()
			return nil
		}
	}
	if t.Kind() != reflect.Pointer && dst.CanAddr() {
		if ok, err := unmarshalInto(v, dst.Addr()); ok {
			return err
		}
	}
	switch t.Kind() {
	case reflect.Pointer:
		p := reflect.New(t.Elem())
		if err := assign(v, p.Elem(), depth+1); err != nil {
			return err
		}
		dst.Set(p)
	case reflect.Bool:
		b, ok := v.(bool)
		if !ok {
			return mismatch(v, t)
		}
		dst.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		var i int64
		switch x := v.(type) {
		case int64:
			i = x
		case int:
			i = int64(x)
		case *big.Int:
			if x == nil {
				return mismatch(nil, t)
			}
			if !x.IsInt64() {
				return outOfRange(t)
			}
			i = x.Int64()
		case float64:
			if x != math.Trunc(x) || math.IsInf(x, 0) {
				return mismatch(v, t)
			}
			if x < -(1<<63) || x >= 1<<63 {
				return outOfRange(t)
			}
			i = int64(x)
		default:
			return mismatch(v, t)
		}
		if dst.OverflowInt(i) {
			return outOfRange(t)
		}
		dst.SetInt(i)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		var u uint64
		switch x := v.(type) {
		case int64:
			if x < 0 {
				return outOfRange(t)
			}
			u = uint64(x)
		case int:
			if x < 0 {
				return outOfRange(t)
			}
			u = uint64(x)
		case *big.Int:
			if x == nil {
				return mismatch(nil, t)
			}
			if !x.IsUint64() {
				return outOfRange(t)
			}
			u = x.Uint64()
		case float64:
			if x != math.Trunc(x) || math.IsInf(x, 0) {
				return mismatch(v, t)
			}
			if x < 0 || x >= 1<<64 {
				return outOfRange(t)
			}
			u = uint64(x)
		default:
			return mismatch(v, t)
		}
		if dst.OverflowUint(u) {
			return outOfRange(t)
		}
		dst.SetUint(u)
	case reflect.Float32, reflect.Float64:
		var f float64
		switch x := v.(type) {
		case float64:
			f = x
		case int64:
			f = float64(x)
		case int:
			f = float64(x)
		case *big.Int:
			if x == nil {
				return mismatch(nil, t)
			}
			f, _ = new(big.Float).SetInt(x).Float64()
		default:
			return mismatch(v, t)
		}
		if t.Kind() == reflect.Float32 && !math.IsInf(f, 0) && math.Abs(f) > math.MaxFloat32 {
			return outOfRange(t)
		}
		dst.SetFloat(f)
	case reflect.String:
		s, ok := v.(string)
		if !ok {
			return mismatch(v, t)
		}
		dst.SetString(s)
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			switch x := v.(type) {
			case []byte:
				dst.SetBytes(append([]byte{}, x...))
				return nil
			case string:
				dst.SetBytes([]byte(x))
				return nil
			case map[string]any:
				if b, ok, err := typedBytes(x); ok {
					if err != nil {
						return err
					}
					dst.SetBytes(b)
					return nil
				}
			}
			return mismatch(v, t)
		}
		list, ok := v.([]any)
		if !ok {
			return mismatch(v, t)
		}
		s := reflect.MakeSlice(t, len(list), len(list))
		for i, e := range list {
			if err := assign(e, s.Index(i), depth+1); err != nil {
				return within(err, fmt.Sprintf("item %d ", i))
			}
		}
		dst.Set(s)
	case reflect.Array:
		list, ok := v.([]any)
		if !ok {
			return mismatch(v, t)
		}
		if len(list) != t.Len() {
			return convertErr("must be a list of %d items, not %d", t.Len(), len(list))
		}
		for i, e := range list {
			if err := assign(e, dst.Index(i), depth+1); err != nil {
				return within(err, fmt.Sprintf("item %d ", i))
			}
		}
	case reflect.Map:
		return assignMap(v, dst, depth)
	case reflect.Struct:
		return assignStruct(v, dst, depth)
	default:
		return convertErr("has unsupported type %s", t)
	}
	return nil
}

func bigValue(v any, t reflect.Type) (*big.Int, error) {
	switch x := v.(type) {
	case int64:
		return big.NewInt(x), nil
	case int:
		return big.NewInt(int64(x)), nil
	case *big.Int:
		if x != nil {
			return new(big.Int).Set(x), nil
		}
	case float64:
		if x == math.Trunc(x) && !math.IsInf(x, 0) {
			b, _ := new(big.Float).SetFloat64(x).Int(nil)
			return b, nil
		}
	}
	return nil, mismatch(v, t)
}

// unmarshalInto calls the UnmarshalJSON or UnmarshalText method of the
// value p points to, when it has one.
func unmarshalInto(v any, p reflect.Value) (bool, error) {
	if !p.CanInterface() {
		return false, nil
	}
	switch u := p.Interface().(type) {
	case json.Unmarshaler:
		b, err := MarshalJSON(v)
		if err != nil {
			return true, convertErr("cannot be written as JSON for %s: %v", p.Type().Elem(), err)
		}
		if err := u.UnmarshalJSON(b); err != nil {
			return true, convertErr("does not fit %s: %v", p.Type().Elem(), err)
		}
		return true, nil
	case encoding.TextUnmarshaler:
		s, ok := v.(string)
		if !ok {
			return true, mismatch(v, reflect.TypeFor[string]())
		}
		if err := u.UnmarshalText([]byte(s)); err != nil {
			return true, convertErr("does not fit %s: %v", p.Type().Elem(), err)
		}
		return true, nil
	}
	return false, nil
}

func dictItems(v any) (Dict, bool) {
	switch m := v.(type) {
	case map[string]any:
		d := make(Dict, 0, len(m))
		for k, e := range m {
			d = append(d, Item{Key: k, Value: e})
		}
		return d, true
	case Dict:
		return m, true
	}
	return nil, false
}

func assignMap(v any, dst reflect.Value, depth int) error {
	t := dst.Type()
	kt := t.Key()
	switch kt.Kind() {
	case reflect.String, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
	default:
		return convertErr("has unsupported type %s", t)
	}
	items, ok := dictItems(v)
	if !ok {
		return mismatch(v, t)
	}
	m := reflect.MakeMapWithSize(t, len(items))
	for _, it := range items {
		k := reflect.New(kt).Elem()
		switch kt.Kind() {
		case reflect.String:
			k.SetString(it.Key)
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			n, err := strconv.ParseInt(it.Key, 10, 64)
			if err != nil || k.OverflowInt(n) {
				return convertErr("key '%s' is not a %s", it.Key, kt)
			}
			k.SetInt(n)
		default:
			n, err := strconv.ParseUint(it.Key, 10, 64)
			if err != nil || k.OverflowUint(n) {
				return convertErr("key '%s' is not a %s", it.Key, kt)
			}
			k.SetUint(n)
		}
		e := reflect.New(t.Elem()).Elem()
		if err := assign(it.Value, e, depth+1); err != nil {
			return within(err, "key '"+it.Key+"' ")
		}
		m.SetMapIndex(k, e)
	}
	dst.Set(m)
	return nil
}

func assignStruct(v any, dst reflect.Value, depth int) error {
	t := dst.Type()
	items, ok := dictItems(v)
	if !ok {
		return mismatch(v, t)
	}
	fields := cachedFields(t)
	for _, it := range items {
		f := matchField(fields, it.Key)
		if f == nil {
			continue
		}
		fv, ok := fieldForSet(dst, f.index)
		if !ok {
			continue
		}
		val := it.Value
		if f.quoted {
			s, isStr := val.(string)
			if !isStr {
				return within(mismatch(val, reflect.TypeFor[string]()), "key '"+it.Key+"' ")
			}
			if fv.Kind() != reflect.String {
				d, err := UnmarshalJSON([]byte(s))
				if err != nil {
					return within(convertErr("must hold a JSON %s: %v", PyTypeName(fv.Type()), err), "key '"+it.Key+"' ")
				}
				val = d
			} else if d, err := UnmarshalJSON([]byte(s)); err == nil {
				if ds, ok := d.(string); ok {
					val = ds
				}
			}
		}
		if err := assign(val, fv, depth+1); err != nil {
			return within(err, "key '"+it.Key+"' ")
		}
	}
	return nil
}

// matchField finds the field of a dict key: the exact name, else the
// first one equal without regard to case, as encoding/json matches.
func matchField(fields []structField, key string) *structField {
	for i := range fields {
		if fields[i].name == key {
			return &fields[i]
		}
	}
	for i := range fields {
		if strings.EqualFold(fields[i].name, key) {
			return &fields[i]
		}
	}
	return nil
}

// fieldForSet walks index from struct v, allocating nil embedded pointers
// on the way; it fails for an embedded pointer to an unexported type.
func fieldForSet(v reflect.Value, index []int) (reflect.Value, bool) {
	for i, x := range index {
		if i > 0 && v.Kind() == reflect.Pointer {
			if v.IsNil() {
				if !v.CanSet() {
					return reflect.Value{}, false
				}
				v.Set(reflect.New(v.Type().Elem()))
			}
			v = v.Elem()
		}
		v = v.Field(x)
	}
	return v, v.CanSet()
}

// typedBytes reads bytes as kombu 5.3+ writes them in JSON: {"__type__":
// "bytes", "__value__": the UTF-8 text} or, for bytes that are not UTF-8,
// {"__type__": "base64", "__value__": their base64}. ok is false when m is
// no such object (it stays a dict: kombu 5.2 has no typed JSON).
func typedBytes(m map[string]any) (b []byte, ok bool, err error) {
	if len(m) != 2 {
		return nil, false, nil
	}
	v, isStr := m["__value__"].(string)
	if !isStr {
		return nil, false, nil
	}
	switch m["__type__"] {
	case "bytes":
		return []byte(v), true, nil
	case "base64":
		b, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			return nil, true, convertErr("must be base64 bytes: %v", err)
		}
		return b, true, nil
	}
	return nil, false, nil
}
