package protocol

import (
	"encoding"
	"encoding/json"
	"math"
	"math/big"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// FromGo converts an arbitrary Go value into the value types of the
// package, the types Python itself would hold: nil, bool, string, int64
// (*big.Int beyond the int64 range), float64, []byte, time.Time, []any,
// map[string]any and Dict. Both encoders (MarshalJSON and msgpack) write
// every value through this one rule, so a value reaches Python with the
// same types whatever the serializer and wherever it sits:
//
//   - every Go integer kind is an int and every float kind a float, also
//     inside structs, slices, maps and behind pointers: float64(6) is
//     written 6.0, never 6; a float32 is the float64 nearest its shortest
//     decimal form (float32(0.1) is 0.1);
//   - a struct is a dict whose keys follow encoding/json's rules: the json
//     tag's name, "-", omitempty, omitzero and the string option, promoted
//     fields of embedded structs with Go's dominance rules, unexported
//     fields left out; the keys keep the order of the fields;
//   - a type with a MarshalJSON method is what that method writes (read
//     back with integers and floats kept apart), a type with a MarshalText
//     method is a str; time.Time is kombu's ISO 8601 string form and
//     *big.Int an int, ahead of their own marshalers;
//   - typed slices and arrays are lists ([]byte is bytes: JSON refuses it,
//     as kombu does, msgpack writes bin); maps with string, integer or
//     MarshalText keys are dicts; nil pointers, slices and maps are None;
//   - Signature and *Exception are their dict forms, json.Number its number.
//
// Channels, functions, complex numbers and nesting deeper than
// MaxJSONDepth (a cyclic value) give an *EncodeError.
func FromGo(v any) (any, error) {
	return fromGo(v, 0)
}

var (
	jsonMarshalerType = reflect.TypeFor[json.Marshaler]()
	textMarshalerType = reflect.TypeFor[encoding.TextMarshaler]()
	timeType          = reflect.TypeFor[time.Time]()
	bigIntPtrType     = reflect.TypeFor[*big.Int]()
	dictType          = reflect.TypeFor[Dict]()
	signatureType     = reflect.TypeFor[Signature]()
	signaturePtrType  = reflect.TypeFor[*Signature]()
	exceptionPtrType  = reflect.TypeFor[*Exception]()
	numberType        = reflect.TypeFor[json.Number]()
	anySliceType      = reflect.TypeFor[[]any]()
	anyMapType        = reflect.TypeFor[map[string]any]()
)

// fromGo is FromGo at a nesting depth. Plain values of the package are
// returned without reflection; containers are copied.
func fromGo(v any, depth int) (any, error) {
	if depth > MaxJSONDepth {
		return nil, unsupported("nesting deeper than %d (cyclic value?)", MaxJSONDepth)
	}
	switch x := v.(type) {
	case nil, bool, string, int64, float64, []byte, time.Time:
		return x, nil
	case int:
		return int64(x), nil
	case int32:
		return int64(x), nil
	case int16:
		return int64(x), nil
	case int8:
		return int64(x), nil
	case uint:
		return uintValue(uint64(x)), nil
	case uint64:
		return uintValue(x), nil
	case uint32:
		return int64(x), nil
	case uint16:
		return int64(x), nil
	case uint8:
		return int64(x), nil
	case float32:
		return float32Value(x), nil
	case *big.Int:
		if x == nil {
			return nil, nil
		}
		return x, nil
	case []any:
		out := make([]any, len(x))
		for i, it := range x {
			c, err := fromGo(it, depth+1)
			if err != nil {
				return nil, err
			}
			out[i] = c
		}
		return out, nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, it := range x {
			c, err := fromGo(it, depth+1)
			if err != nil {
				return nil, err
			}
			out[k] = c
		}
		return out, nil
	case Dict:
		out := make(Dict, len(x))
		for i, it := range x {
			c, err := fromGo(it.Value, depth+1)
			if err != nil {
				return nil, err
			}
			out[i] = Item{Key: it.Key, Value: c}
		}
		return out, nil
	case []string:
		out := make([]any, len(x))
		for i, s := range x {
			out[i] = s
		}
		return out, nil
	case Signature:
		return fromGo(x.Value(), depth)
	case *Signature:
		if x == nil {
			return nil, nil
		}
		return fromGo(x.Value(), depth)
	case *Exception:
		if x == nil {
			return nil, nil
		}
		return fromGo(x.Value(), depth)
	case json.Number:
		d, err := UnmarshalJSON([]byte(x))
		if err != nil {
			return nil, unsupported("invalid json.Number %q", string(x))
		}
		switch d.(type) {
		case int64, *big.Int, float64:
			return d, nil
		}
		return nil, unsupported("invalid json.Number %q", string(x))
	}
	return fromReflect(reflect.ValueOf(v), depth)
}

// uintValue is an int64, or a *big.Int above MaxInt64.
func uintValue(u uint64) any {
	if u > math.MaxInt64 {
		return new(big.Int).SetUint64(u)
	}
	return int64(u)
}

// float32Value is the float64 Python reads from the shortest decimal form
// of f, so JSON and msgpack carry the same float.
func float32Value(f float32) float64 {
	g := float64(f)
	if math.IsInf(g, 0) || math.IsNaN(g) || g == math.Trunc(g) {
		return g
	}
	var scratch [32]byte
	s := strconv.AppendFloat(scratch[:0], g, 'g', -1, 32)
	if p, err := strconv.ParseFloat(string(s), 64); err == nil {
		return p
	}
	return g
}

func fromReflect(rv reflect.Value, depth int) (any, error) {
	if depth > MaxJSONDepth {
		return nil, unsupported("nesting deeper than %d (cyclic value?)", MaxJSONDepth)
	}
	if !rv.IsValid() {
		return nil, nil
	}
	t := rv.Type()
	switch t {
	case timeType, bigIntPtrType, dictType, signatureType, signaturePtrType, exceptionPtrType, numberType, anySliceType, anyMapType:
		if rv.CanInterface() {
			return fromGo(rv.Interface(), depth)
		}
	}
	if v, ok, err := marshalerValue(rv, depth); ok {
		return v, err
	}
	switch rv.Kind() {
	case reflect.Pointer, reflect.Interface:
		if rv.IsNil() {
			return nil, nil
		}
		return fromReflect(rv.Elem(), depth+1)
	case reflect.Bool:
		return rv.Bool(), nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return rv.Int(), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return uintValue(rv.Uint()), nil
	case reflect.Float32:
		return float32Value(float32(rv.Float())), nil
	case reflect.Float64:
		return rv.Float(), nil
	case reflect.String:
		return rv.String(), nil
	case reflect.Slice:
		if rv.IsNil() {
			return nil, nil
		}
		if t.Elem().Kind() == reflect.Uint8 && !implementsMarshaler(t.Elem()) {
			return slices.Clone(rv.Bytes()), nil
		}
		return listValue(rv, depth)
	case reflect.Array:
		return listValue(rv, depth)
	case reflect.Map:
		if rv.IsNil() {
			return nil, nil
		}
		out := make(map[string]any, rv.Len())
		iter := rv.MapRange()
		for iter.Next() {
			k, err := mapKey(iter.Key())
			if err != nil {
				return nil, err
			}
			c, err := fromReflect(iter.Value(), depth+1)
			if err != nil {
				return nil, err
			}
			out[k] = c
		}
		return out, nil
	case reflect.Struct:
		return structValue(rv, depth)
	}
	return nil, unsupported("type %s", t)
}

func implementsMarshaler(t reflect.Type) bool {
	return t.Implements(jsonMarshalerType) || t.Implements(textMarshalerType) ||
		reflect.PointerTo(t).Implements(jsonMarshalerType) || reflect.PointerTo(t).Implements(textMarshalerType)
}

// marshalerValue applies encoding/json's precedence: MarshalJSON, then
// MarshalText, on the value or, when it is addressable, on its pointer.
func marshalerValue(rv reflect.Value, depth int) (any, bool, error) {
	t := rv.Type()
	m := rv
	switch {
	case t.Implements(jsonMarshalerType) || t.Implements(textMarshalerType):
	case rv.Kind() != reflect.Pointer && rv.CanAddr() &&
		(reflect.PointerTo(t).Implements(jsonMarshalerType) || reflect.PointerTo(t).Implements(textMarshalerType)):
		m = rv.Addr()
	default:
		return nil, false, nil
	}
	if (m.Kind() == reflect.Pointer || m.Kind() == reflect.Interface) && m.IsNil() {
		return nil, true, nil
	}
	if !m.CanInterface() {
		return nil, false, nil
	}
	switch x := m.Interface().(type) {
	case json.Marshaler:
		b, err := x.MarshalJSON()
		if err != nil {
			return nil, true, &EncodeError{Msg: t.String(), Err: err}
		}
		d, err := UnmarshalJSON(b)
		if err != nil {
			return nil, true, &EncodeError{Msg: t.String() + ": MarshalJSON", Err: err}
		}
		v, err := fromGo(d, depth+1)
		return v, true, err
	case encoding.TextMarshaler:
		b, err := x.MarshalText()
		if err != nil {
			return nil, true, &EncodeError{Msg: t.String(), Err: err}
		}
		return string(b), true, nil
	}
	return nil, false, nil
}

func listValue(rv reflect.Value, depth int) (any, error) {
	out := make([]any, rv.Len())
	for i := range out {
		c, err := fromReflect(rv.Index(i), depth+1)
		if err != nil {
			return nil, err
		}
		out[i] = c
	}
	return out, nil
}

// mapKey writes a map key as encoding/json does: strings as they are,
// then MarshalText, then integers in decimal.
func mapKey(k reflect.Value) (string, error) {
	if k.Kind() == reflect.String {
		return k.String(), nil
	}
	if k.Type().Implements(textMarshalerType) && k.CanInterface() {
		if k.Kind() == reflect.Pointer && k.IsNil() {
			return "", nil
		}
		b, err := k.Interface().(encoding.TextMarshaler).MarshalText()
		if err != nil {
			return "", &EncodeError{Msg: "map key " + k.Type().String(), Err: err}
		}
		return string(b), nil
	}
	switch k.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(k.Int(), 10), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return strconv.FormatUint(k.Uint(), 10), nil
	}
	return "", unsupported("map key type %s", k.Type())
}

func structValue(rv reflect.Value, depth int) (any, error) {
	fields := cachedFields(rv.Type())
	out := make(Dict, 0, len(fields))
	for i := range fields {
		f := &fields[i]
		fv, ok := fieldByIndex(rv, f.index)
		if !ok {
			continue // behind a nil embedded pointer
		}
		if f.omitEmpty && isEmptyValue(fv) || f.omitZero && isZeroValue(fv) {
			continue
		}
		c, err := fromReflect(fv, depth+1)
		if err != nil {
			return nil, err
		}
		if f.quoted {
			c, err = quotedValue(c)
			if err != nil {
				return nil, err
			}
		}
		out = append(out, Item{Key: f.name, Value: c})
	}
	return out, nil
}

// quotedValue applies the ",string" option: a bool, number or string is
// written as a string holding its JSON form.
func quotedValue(v any) (any, error) {
	switch v.(type) {
	case bool, int64, *big.Int, float64, string:
		b, err := MarshalJSON(v)
		if err != nil {
			return nil, err
		}
		return string(b), nil
	}
	return v, nil
}

func fieldByIndex(v reflect.Value, index []int) (reflect.Value, bool) {
	for i, x := range index {
		if i > 0 && v.Kind() == reflect.Pointer {
			if v.IsNil() {
				return reflect.Value{}, false
			}
			v = v.Elem()
		}
		v = v.Field(x)
	}
	return v, true
}

func isEmptyValue(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Array, reflect.Map, reflect.Slice, reflect.String:
		return v.Len() == 0
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Interface, reflect.Pointer:
		return v.IsZero()
	}
	return false
}

func isZeroValue(v reflect.Value) bool {
	if (v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface) && v.IsNil() {
		return true
	}
	if v.CanInterface() {
		if z, ok := v.Interface().(interface{ IsZero() bool }); ok {
			return z.IsZero()
		}
	}
	return v.IsZero()
}

// structField is one key of a struct's dict form.
type structField struct {
	name      string
	index     []int
	tagged    bool
	omitEmpty bool
	omitZero  bool
	quoted    bool
}

// fieldCache holds the dict layout of each struct type met, as
// encoding/json does; the layout depends on the type alone.
var fieldCache sync.Map // reflect.Type -> []structField

func cachedFields(t reflect.Type) []structField {
	if f, ok := fieldCache.Load(t); ok {
		return f.([]structField)
	}
	f, _ := fieldCache.LoadOrStore(t, typeFields(t))
	return f.([]structField)
}

// StructKeys returns the dict keys of struct type t (following pointers)
// in the order FromGo writes them, with the Go field index of each; it
// returns nil for other types. Decoders use it to fill a struct from a
// dict by the same names.
func StructKeys(t reflect.Type) (names []string, index [][]int) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil, nil
	}
	for _, f := range cachedFields(t) {
		names = append(names, f.name)
		index = append(index, f.index)
	}
	return names, index
}

// typeFields lists the keys of struct type t: breadth first through
// embedded structs, so that a shallower field hides deeper ones of the
// same name; among fields at the same depth a tagged one wins, and two of
// equal standing hide each other.
func typeFields(t reflect.Type) []structField {
	type walk struct {
		typ   reflect.Type
		index []int
	}
	var fields []structField
	next := []walk{{typ: t}}
	visited := map[reflect.Type]bool{}
	for len(next) > 0 {
		current := next
		next = nil
		count := map[reflect.Type]int{}
		for _, w := range current {
			count[w.typ]++
		}
		for _, w := range current {
			if visited[w.typ] {
				continue
			}
			visited[w.typ] = true
			for i := 0; i < w.typ.NumField(); i++ {
				sf := w.typ.Field(i)
				ft := sf.Type
				if ft.Name() == "" && ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				if sf.Anonymous {
					if !sf.IsExported() && ft.Kind() != reflect.Struct {
						continue
					}
				} else if !sf.IsExported() {
					continue
				}
				tag := sf.Tag.Get("json")
				if tag == "-" {
					continue
				}
				name, opts, _ := strings.Cut(tag, ",")
				if !validTagName(name) {
					name = ""
				}
				index := append(slices.Clone(w.index), i)
				if name == "" && sf.Anonymous && ft.Kind() == reflect.Struct {
					next = append(next, walk{typ: ft, index: index})
					continue
				}
				f := structField{name: name, index: index, tagged: name != ""}
				if f.name == "" {
					f.name = sf.Name
				}
				for o := range strings.SplitSeq(opts, ",") {
					switch o {
					case "omitempty":
						f.omitEmpty = true
					case "omitzero":
						f.omitZero = true
					case "string":
						switch ft.Kind() {
						case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
							reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
							reflect.Float32, reflect.Float64, reflect.String:
							f.quoted = true
						}
					}
				}
				fields = append(fields, f)
				if count[w.typ] > 1 {
					// The same embedded type twice at this depth: its
					// fields annihilate each other.
					fields = append(fields, f)
				}
			}
		}
	}
	slices.SortStableFunc(fields, func(a, b structField) int {
		if c := strings.Compare(a.name, b.name); c != 0 {
			return c
		}
		if c := len(a.index) - len(b.index); c != 0 {
			return c
		}
		if a.tagged != b.tagged {
			if a.tagged {
				return -1
			}
			return 1
		}
		return slices.Compare(a.index, b.index)
	})
	out := fields[:0]
	for i := 0; i < len(fields); {
		j := i + 1
		for j < len(fields) && fields[j].name == fields[i].name {
			j++
		}
		same := fields[i:j]
		if len(same) == 1 || len(same[0].index) != len(same[1].index) || same[0].tagged != same[1].tagged {
			out = append(out, same[0])
		}
		i = j
	}
	slices.SortFunc(out, func(a, b structField) int { return slices.Compare(a.index, b.index) })
	return slices.Clip(out)
}

// validTagName reports whether a json tag name is usable as a key, as
// encoding/json decides.
func validTagName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		switch {
		case strings.ContainsRune("!#$%&()*+-./:;<=>?@[]^_{|}~ ", c):
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c > 0x7f:
		default:
			return false
		}
	}
	return true
}
