package pickle

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Errors of Unmarshal. Every error it returns wraps ErrInvalid; one that
// met an opcode outside the accepted set also wraps ErrForbidden.
var (
	ErrInvalid   = errors.New("pickle: invalid or unsupported data")
	ErrForbidden = errors.New("pickle: forbidden opcode")
)

// MaxIntBytes bounds the size of one integer (LONG1/LONG4), about
// Python's 4300-digit limit on decimal integer conversion.
const MaxIntBytes = 1800

// opNames names the opcodes Unmarshal refuses, for its error messages.
var opNames = map[byte]string{
	'c': "GLOBAL", 0x93: "STACK_GLOBAL", 'R': "REDUCE", 'b': "BUILD",
	'i': "INST", 'o': "OBJ", 0x81: "NEWOBJ", 0x92: "NEWOBJ_EX",
	'P': "PERSID", 'Q': "BINPERSID", 0x82: "EXT1", 0x83: "EXT2", 0x84: "EXT4",
	0x8f: "EMPTY_SET", 0x90: "ADDITEMS", 0x91: "FROZENSET",
	0x96: "BYTEARRAY8", 0x97: "NEXT_BUFFER", 0x98: "READONLY_BUFFER",
	'S': "STRING", 'T': "BINSTRING", 'U': "SHORT_BINSTRING",
}

// Unmarshal decodes a pickle of protocol 0 to 5 made only of None, bool,
// int, float, str, bytes, list, tuple and dict, with memo references, and
// returns the value as the protocol package does for JSON: nil, bool,
// int64 (or *big.Int beyond 64 bits), float64, string, []byte, []any for
// lists and tuples, map[string]any for dicts. Dict keys must be str, or
// int, float, bool or None, which become their JSON text as json.dumps
// writes them. Any other opcode is refused with an error wrapping
// ErrForbidden and ErrInvalid; no input makes it run code or allocate much
// beyond the input's size.
func Unmarshal(data []byte) (any, error) {
	return UnmarshalOptions{}.Unmarshal(data)
}

// UnmarshalOptions widens what Unmarshal accepts.
type UnmarshalOptions struct {
	// Globals lists "module.name" callables whose reconstruction is
	// returned as a Call value (GLOBAL or STACK_GLOBAL of the name, then
	// REDUCE with a tuple). Nothing is imported or called: the Call is
	// data for the caller to interpret. A name not listed is refused as
	// every GLOBAL is by Unmarshal.
	Globals []string
}

// Unmarshal decodes data as the package's Unmarshal does, with o's
// allowances.
func (o UnmarshalOptions) Unmarshal(data []byte) (any, error) {
	d := &decoder{data: data, memo: map[uint64]any{}, globals: o.Globals}
	v, err := d.run()
	if err != nil {
		return nil, err
	}
	return d.finish(v, 0)
}

// list and dict are the mutable containers while a pickle is read: memo
// references share them, and APPEND/SETITEM change them in place.
type (
	pyList struct {
		items []any
		done  any // converted value, once finished
		state int8
	}
	pyDict struct {
		keys  []any
		vals  []any
		done  any
		state int8
	}
	pyTuple struct {
		items []any
		done  any
		state int8
	}
)

const (
	stateNew int8 = iota
	stateBusy
	stateDone
)

type decoder struct {
	data  []byte
	pos   int
	stack []any
	marks []int
	memo  map[uint64]any
	// globals are the allowed "module.name"s.
	globals []string
}

// Global is an allowed global that Unmarshal met as a value rather than
// called (a class passed as an argument, for example).
type Global struct{ Module, Name string }

// global is an allowed callable on the stack, before its REDUCE.
type global struct{ module, name string }

// pyCall is a REDUCE of an allowed global: it becomes a Call.
type pyCall struct {
	fn    global
	args  *pyTuple
	done  any
	state int8
}

func (d *decoder) pushGlobal(module, name string) error {
	if !slices.Contains(d.globals, module+"."+name) {
		return fmt.Errorf("%w: %w: global %s.%s at byte %d: only None, bool, int, float, str, bytes, list, tuple and dict are accepted",
			ErrInvalid, ErrForbidden, module, name, d.pos)
	}
	return d.push(global{module, name})
}

func (d *decoder) errorf(format string, args ...any) error {
	return fmt.Errorf("%w: at byte %d: %s", ErrInvalid, d.pos, fmt.Sprintf(format, args...))
}

func (d *decoder) read(n uint64) ([]byte, error) {
	if n > uint64(len(d.data)-d.pos) {
		return nil, d.errorf("truncated: %d bytes wanted, %d left", n, len(d.data)-d.pos)
	}
	b := d.data[d.pos : d.pos+int(n)]
	d.pos += int(n)
	return b, nil
}

func (d *decoder) readLine() (string, error) {
	i := slices.Index(d.data[d.pos:], '\n')
	if i < 0 {
		return "", d.errorf("truncated: no end of line")
	}
	s := string(d.data[d.pos : d.pos+i])
	d.pos += i + 1
	return s, nil
}

func (d *decoder) push(v any) error {
	if len(d.stack) > len(d.data)+1 {
		return d.errorf("stack larger than the input")
	}
	d.stack = append(d.stack, v)
	return nil
}

func (d *decoder) pop() (any, error) {
	n := len(d.stack)
	if n == 0 || (len(d.marks) > 0 && d.marks[len(d.marks)-1] == n) {
		return nil, d.errorf("stack underflow")
	}
	v := d.stack[n-1]
	d.stack = d.stack[:n-1]
	return v, nil
}

func (d *decoder) top() (any, error) {
	n := len(d.stack)
	if n == 0 || (len(d.marks) > 0 && d.marks[len(d.marks)-1] == n) {
		return nil, d.errorf("stack underflow")
	}
	return d.stack[n-1], nil
}

// popMark returns the items above the last MARK and removes them and it.
func (d *decoder) popMark() ([]any, error) {
	if len(d.marks) == 0 {
		return nil, d.errorf("no MARK on the stack")
	}
	m := d.marks[len(d.marks)-1]
	d.marks = d.marks[:len(d.marks)-1]
	items := slices.Clone(d.stack[m:])
	d.stack = d.stack[:m]
	return items, nil
}

func (d *decoder) run() (any, error) {
	for {
		if d.pos >= len(d.data) {
			return nil, d.errorf("truncated: no STOP")
		}
		op := d.data[d.pos]
		d.pos++
		switch op {
		case opProto:
			b, err := d.read(1)
			if err != nil {
				return nil, err
			}
			if b[0] > Protocol {
				return nil, d.errorf("unsupported protocol %d", b[0])
			}
		case opFrame:
			if _, err := d.read(8); err != nil {
				return nil, err
			}
		case opStop:
			if len(d.marks) > 0 {
				return nil, d.errorf("STOP with an open MARK")
			}
			if len(d.stack) != 1 {
				return nil, d.errorf("STOP with %d values on the stack", len(d.stack))
			}
			return d.stack[0], nil
		case opMark:
			if len(d.marks) > MaxDepth*4 {
				return nil, d.errorf("too many MARKs")
			}
			d.marks = append(d.marks, len(d.stack))
		case opPop:
			if len(d.marks) > 0 && d.marks[len(d.marks)-1] == len(d.stack) {
				// POP of a MARK, as Python allows.
				d.marks = d.marks[:len(d.marks)-1]
				break
			}
			if _, err := d.pop(); err != nil {
				return nil, err
			}
		case opPopMark:
			if _, err := d.popMark(); err != nil {
				return nil, err
			}
		case opDup:
			v, err := d.top()
			if err != nil {
				return nil, err
			}
			if err := d.push(v); err != nil {
				return nil, err
			}
		case opNone:
			if err := d.push(nil); err != nil {
				return nil, err
			}
		case opNewTrue, opNewFalse:
			if err := d.push(op == opNewTrue); err != nil {
				return nil, err
			}
		case opBinInt1:
			b, err := d.read(1)
			if err != nil {
				return nil, err
			}
			if err := d.push(int64(b[0])); err != nil {
				return nil, err
			}
		case opBinInt2:
			b, err := d.read(2)
			if err != nil {
				return nil, err
			}
			if err := d.push(int64(binary.LittleEndian.Uint16(b))); err != nil {
				return nil, err
			}
		case opBinInt:
			b, err := d.read(4)
			if err != nil {
				return nil, err
			}
			if err := d.push(int64(int32(binary.LittleEndian.Uint32(b)))); err != nil {
				return nil, err
			}
		case opLong1, opLong4:
			var n uint64
			if op == opLong1 {
				b, err := d.read(1)
				if err != nil {
					return nil, err
				}
				n = uint64(b[0])
			} else {
				b, err := d.read(4)
				if err != nil {
					return nil, err
				}
				n = uint64(int64(int32(binary.LittleEndian.Uint32(b))))
				if int32(binary.LittleEndian.Uint32(b)) < 0 {
					return nil, d.errorf("LONG4 with a negative size")
				}
			}
			if n > MaxIntBytes {
				return nil, d.errorf("integer of %d bytes exceeds the limit of %d", n, MaxIntBytes)
			}
			b, err := d.read(n)
			if err != nil {
				return nil, err
			}
			if err := d.push(decodeLong(b)); err != nil {
				return nil, err
			}
		case opInt:
			s, err := d.readLine()
			if err != nil {
				return nil, err
			}
			var v any
			switch s {
			case "00":
				v = false
			case "01":
				v = true
			default:
				v, err = parseInt(s)
				if err != nil {
					return nil, d.errorf("INT %q: %v", s, err)
				}
			}
			if err := d.push(v); err != nil {
				return nil, err
			}
		case opLong:
			s, err := d.readLine()
			if err != nil {
				return nil, err
			}
			v, err := parseInt(strings.TrimSuffix(s, "L"))
			if err != nil {
				return nil, d.errorf("LONG %q: %v", s, err)
			}
			if err := d.push(v); err != nil {
				return nil, err
			}
		case opBinFloat:
			b, err := d.read(8)
			if err != nil {
				return nil, err
			}
			if err := d.push(math.Float64frombits(binary.BigEndian.Uint64(b))); err != nil {
				return nil, err
			}
		case opFloat:
			s, err := d.readLine()
			if err != nil {
				return nil, err
			}
			f, err := strconv.ParseFloat(s, 64)
			if err != nil {
				return nil, d.errorf("FLOAT %q: %v", s, err)
			}
			if err := d.push(f); err != nil {
				return nil, err
			}
		case opShortBinUnicod, opBinUnicode, opBinUnicode8:
			b, err := d.sized(op, opShortBinUnicod, opBinUnicode)
			if err != nil {
				return nil, err
			}
			s, err := pyString(b)
			if err != nil {
				return nil, d.errorf("%v", err)
			}
			if err := d.push(s); err != nil {
				return nil, err
			}
		case opUnicode:
			s, err := d.readLine()
			if err != nil {
				return nil, err
			}
			u, err := rawUnicodeEscape(s)
			if err != nil {
				return nil, d.errorf("UNICODE: %v", err)
			}
			if err := d.push(u); err != nil {
				return nil, err
			}
		case opShortBinBytes, opBinBytes, opBinBytes8:
			b, err := d.sized(op, opShortBinBytes, opBinBytes)
			if err != nil {
				return nil, err
			}
			if err := d.push(slices.Clone(b)); err != nil {
				return nil, err
			}
		case opEmptyList:
			if err := d.push(&pyList{}); err != nil {
				return nil, err
			}
		case opList:
			items, err := d.popMark()
			if err != nil {
				return nil, err
			}
			if err := d.push(&pyList{items: items}); err != nil {
				return nil, err
			}
		case opAppend, opAppends:
			var items []any
			if op == opAppend {
				v, err := d.pop()
				if err != nil {
					return nil, err
				}
				items = []any{v}
			} else {
				var err error
				if items, err = d.popMark(); err != nil {
					return nil, err
				}
			}
			t, err := d.top()
			if err != nil {
				return nil, err
			}
			l, ok := t.(*pyList)
			if !ok {
				return nil, d.errorf("APPEND to %s, not a list", kind(t))
			}
			l.items = append(l.items, items...)
		case opEmptyDict:
			if err := d.push(&pyDict{}); err != nil {
				return nil, err
			}
		case opDict:
			items, err := d.popMark()
			if err != nil {
				return nil, err
			}
			dict := &pyDict{}
			if err := dict.set(items); err != nil {
				return nil, d.errorf("DICT: %v", err)
			}
			if err := d.push(dict); err != nil {
				return nil, err
			}
		case opSetItem, opSetItems:
			var items []any
			if op == opSetItem {
				v, err := d.pop()
				if err != nil {
					return nil, err
				}
				k, err := d.pop()
				if err != nil {
					return nil, err
				}
				items = []any{k, v}
			} else {
				var err error
				if items, err = d.popMark(); err != nil {
					return nil, err
				}
			}
			t, err := d.top()
			if err != nil {
				return nil, err
			}
			dict, ok := t.(*pyDict)
			if !ok {
				return nil, d.errorf("SETITEM on %s, not a dict", kind(t))
			}
			if err := dict.set(items); err != nil {
				return nil, d.errorf("SETITEMS: %v", err)
			}
		case opEmptyTuple:
			if err := d.push(&pyTuple{}); err != nil {
				return nil, err
			}
		case opTuple:
			items, err := d.popMark()
			if err != nil {
				return nil, err
			}
			if err := d.push(&pyTuple{items: items}); err != nil {
				return nil, err
			}
		case opTuple1, opTuple2, opTuple3:
			n := int(op-opTuple1) + 1
			items := make([]any, n)
			for i := n - 1; i >= 0; i-- {
				v, err := d.pop()
				if err != nil {
					return nil, err
				}
				items[i] = v
			}
			if err := d.push(&pyTuple{items: items}); err != nil {
				return nil, err
			}
		case opStackGlobal, opGlobal:
			if len(d.globals) == 0 {
				d.pos--
				return nil, fmt.Errorf("%w: %w: %s (0x%02x) at byte %d: only None, bool, int, float, str, bytes, list, tuple and dict are accepted",
					ErrInvalid, ErrForbidden, opNames[op], op, d.pos)
			}
			var module, name string
			if op == opGlobal {
				m, err := d.readLine()
				if err != nil {
					return nil, err
				}
				n, err := d.readLine()
				if err != nil {
					return nil, err
				}
				module, name = m, n
			} else {
				n, err := d.pop()
				if err != nil {
					return nil, err
				}
				m, err := d.pop()
				if err != nil {
					return nil, err
				}
				ms, ok1 := m.(string)
				ns, ok2 := n.(string)
				if !ok1 || !ok2 {
					return nil, d.errorf("STACK_GLOBAL of %s and %s, not two str", kind(m), kind(n))
				}
				module, name = ms, ns
			}
			if err := d.pushGlobal(module, name); err != nil {
				return nil, err
			}
		case opReduce:
			if len(d.globals) == 0 {
				d.pos--
				return nil, fmt.Errorf("%w: %w: REDUCE (0x52) at byte %d: only None, bool, int, float, str, bytes, list, tuple and dict are accepted",
					ErrInvalid, ErrForbidden, d.pos)
			}
			a, err := d.pop()
			if err != nil {
				return nil, err
			}
			f, err := d.pop()
			if err != nil {
				return nil, err
			}
			fn, ok1 := f.(global)
			args, ok2 := a.(*pyTuple)
			if !ok1 || !ok2 {
				return nil, d.errorf("REDUCE of %s with %s: want an allowed global and a tuple", kind(f), kind(a))
			}
			if err := d.push(&pyCall{fn: fn, args: args}); err != nil {
				return nil, err
			}
		case opMemoize:
			v, err := d.top()
			if err != nil {
				return nil, err
			}
			d.memo[uint64(len(d.memo))] = v
		case opPut, opBinPut, opLongBinPut:
			idx, err := d.memoIndex(op, opPut, opBinPut)
			if err != nil {
				return nil, err
			}
			v, err := d.top()
			if err != nil {
				return nil, err
			}
			d.memo[idx] = v
		case opGet, opBinGet, opLongBinGet:
			idx, err := d.memoIndex(op, opGet, opBinGet)
			if err != nil {
				return nil, err
			}
			v, ok := d.memo[idx]
			if !ok {
				return nil, d.errorf("memo reference %d to nothing", idx)
			}
			if err := d.push(v); err != nil {
				return nil, err
			}
		default:
			d.pos--
			if name, ok := opNames[op]; ok {
				return nil, fmt.Errorf("%w: %w: %s (0x%02x) at byte %d: only None, bool, int, float, str, bytes, list, tuple and dict are accepted",
					ErrInvalid, ErrForbidden, name, op, d.pos)
			}
			return nil, fmt.Errorf("%w: %w: unknown opcode 0x%02x at byte %d", ErrInvalid, ErrForbidden, op, d.pos)
		}
	}
}

// sized reads the length-prefixed payload of a 1-byte, 4-byte or 8-byte
// sized opcode.
func (d *decoder) sized(op, short, four byte) ([]byte, error) {
	var n uint64
	switch op {
	case short:
		b, err := d.read(1)
		if err != nil {
			return nil, err
		}
		n = uint64(b[0])
	case four:
		b, err := d.read(4)
		if err != nil {
			return nil, err
		}
		n = uint64(binary.LittleEndian.Uint32(b))
	default:
		b, err := d.read(8)
		if err != nil {
			return nil, err
		}
		n = binary.LittleEndian.Uint64(b)
	}
	return d.read(n)
}

func (d *decoder) memoIndex(op, text, one byte) (uint64, error) {
	switch op {
	case text:
		s, err := d.readLine()
		if err != nil {
			return 0, err
		}
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return 0, d.errorf("memo index %q: %v", s, err)
		}
		return n, nil
	case one:
		b, err := d.read(1)
		if err != nil {
			return 0, err
		}
		return uint64(b[0]), nil
	}
	b, err := d.read(4)
	if err != nil {
		return 0, err
	}
	return uint64(binary.LittleEndian.Uint32(b)), nil
}

func (dict *pyDict) set(items []any) error {
	if len(items)%2 != 0 {
		return fmt.Errorf("odd number of items (%d)", len(items))
	}
	for i := 0; i < len(items); i += 2 {
		switch items[i].(type) {
		case string, int64, *big.Int, float64, bool, nil:
		default:
			return fmt.Errorf("dict key of type %s: only str, int, float, bool and None keys are accepted", kind(items[i]))
		}
		dict.keys = append(dict.keys, items[i])
		dict.vals = append(dict.vals, items[i+1])
	}
	return nil
}

// finish turns the decoded containers into plain Go values. A container
// met twice (a memo reference) is converted once and shared; a container
// that holds itself is an error.
func (d *decoder) finish(v any, depth int) (any, error) {
	if depth > MaxDepth {
		return nil, fmt.Errorf("%w: nesting deeper than %d", ErrInvalid, MaxDepth)
	}
	switch x := v.(type) {
	case *pyList:
		return finishSeq(d, &x.state, &x.done, x.items, depth)
	case *pyTuple:
		return finishSeq(d, &x.state, &x.done, x.items, depth)
	case *pyCall:
		switch x.state {
		case stateDone:
			return x.done, nil
		case stateBusy:
			return nil, fmt.Errorf("%w: a call contains itself", ErrInvalid)
		}
		x.state = stateBusy
		args, err := d.finish(x.args, depth+1)
		if err != nil {
			return nil, err
		}
		c := Call{Module: x.fn.module, Name: x.fn.name, Args: Tuple(args.([]any))}
		x.state, x.done = stateDone, c
		return c, nil
	case global:
		return Global{Module: x.module, Name: x.name}, nil
	case *pyDict:
		switch x.state {
		case stateDone:
			return x.done, nil
		case stateBusy:
			return nil, fmt.Errorf("%w: a dict contains itself", ErrInvalid)
		}
		x.state = stateBusy
		m := make(map[string]any, len(x.keys))
		for i, k := range x.keys {
			val, err := d.finish(x.vals[i], depth+1)
			if err != nil {
				return nil, err
			}
			m[keyText(k)] = val
		}
		x.state, x.done = stateDone, m
		return m, nil
	}
	return v, nil
}

func finishSeq(d *decoder, state *int8, done *any, items []any, depth int) (any, error) {
	switch *state {
	case stateDone:
		return *done, nil
	case stateBusy:
		return nil, fmt.Errorf("%w: a list or tuple contains itself", ErrInvalid)
	}
	*state = stateBusy
	out := make([]any, len(items))
	for i, it := range items {
		v, err := d.finish(it, depth+1)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	*state, *done = stateDone, out
	return out, nil
}

// keyText is json.dumps's text for a dict key that is not a str.
func keyText(k any) string {
	switch x := k.(type) {
	case string:
		return x
	case nil:
		return "null"
	case bool:
		if x {
			return "true"
		}
		return "false"
	case int64:
		return strconv.FormatInt(x, 10)
	case *big.Int:
		return x.String()
	case float64:
		switch {
		case math.IsNaN(x):
			return "NaN"
		case math.IsInf(x, 1):
			return "Infinity"
		case math.IsInf(x, -1):
			return "-Infinity"
		}
		s := strconv.FormatFloat(x, 'g', -1, 64)
		if !strings.ContainsAny(s, ".eIN") {
			s += ".0"
		}
		return s
	}
	return fmt.Sprint(k)
}

func kind(v any) string {
	switch v.(type) {
	case *pyList:
		return "list"
	case *pyDict:
		return "dict"
	case *pyTuple:
		return "tuple"
	case *pyCall:
		return "object"
	case global:
		return "global"
	case nil:
		return "NoneType"
	case bool:
		return "bool"
	case int64, *big.Int:
		return "int"
	case float64:
		return "float"
	case string:
		return "str"
	case []byte:
		return "bytes"
	}
	return fmt.Sprintf("%T", v)
}

// decodeLong reads a two's complement little-endian integer (LONG1/4).
func decodeLong(b []byte) any {
	if len(b) == 0 {
		return int64(0)
	}
	be := slices.Clone(b)
	slices.Reverse(be)
	n := new(big.Int).SetBytes(be)
	if b[len(b)-1]&0x80 != 0 {
		n.Sub(n, new(big.Int).Lsh(big.NewInt(1), uint(8*len(b))))
	}
	if n.IsInt64() {
		return n.Int64()
	}
	return n
}

func parseInt(s string) (any, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n, nil
	}
	if len(s) > MaxIntBytes*3 {
		return nil, errors.New("integer too long")
	}
	n, ok := new(big.Int).SetString(s, 10)
	if !ok {
		return nil, errors.New("not an integer")
	}
	return n, nil
}

// pyString decodes the UTF-8 of a pickled str. Python writes lone
// surrogates with "surrogatepass"; Go strings cannot hold them, so such a
// string is an error, as is any other invalid UTF-8.
func pyString(b []byte) (string, error) {
	if !utf8.Valid(b) {
		return "", errors.New("str is not valid UTF-8 (a lone surrogate?)")
	}
	return string(b), nil
}

// rawUnicodeEscape decodes protocol 0's UNICODE argument: \uXXXX and
// \UXXXXXXXX escapes, every other byte as Latin-1.
func rawUnicodeEscape(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\\' && i+1 < len(s) && (s[i+1] == 'u' || s[i+1] == 'U') {
			n := 4
			if s[i+1] == 'U' {
				n = 8
			}
			if i+2+n > len(s) {
				return "", errors.New("truncated \\u escape")
			}
			r, err := strconv.ParseUint(s[i+2:i+2+n], 16, 32)
			if err != nil || r > utf8.MaxRune || (r >= 0xd800 && r < 0xe000) {
				return "", fmt.Errorf("bad escape %q", s[i:i+2+n])
			}
			b.WriteRune(rune(r))
			i += 1 + n
			continue
		}
		b.WriteRune(rune(c))
	}
	return b.String(), nil
}
