// Package pickle reads and writes the small part of Python's pickle format
// that task results are made of: None, bool, int (of any size), float, str,
// bytes, list, tuple and dict. Celery's SQL result backend keeps results in
// a pickled column (SQLAlchemy's PickleType), which is why gworker needs it.
//
// Marshal writes protocol 5 as Python's C pickler does for the same value,
// byte for byte, when no object occurs twice in the value (the pickler
// then writes a memo reference where Marshal writes the value again; both
// load as equal values).
//
// Unmarshal accepts only the opcodes those types need, and refuses every
// other with an error wrapping ErrForbidden: no GLOBAL or STACK_GLOBAL, no
// REDUCE, BUILD, INST, OBJ or NEWOBJ, no persistent ids or extensions, no
// sets or buffers, so no class is named and no code can run, whatever the
// input. A pickle is data here and nothing more.
package pickle

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"slices"
	"unicode/utf8"

	"github.com/gworker/gworker/protocol"
)

// Opcodes (Python's Lib/pickle.py names).
const (
	opMark           = '('
	opStop           = '.'
	opPop            = '0'
	opPopMark        = '1'
	opDup            = '2'
	opFloat          = 'F'
	opInt            = 'I'
	opBinInt         = 'J'
	opBinInt1        = 'K'
	opLong           = 'L'
	opBinInt2        = 'M'
	opNone           = 'N'
	opUnicode        = 'V'
	opBinUnicode     = 'X'
	opAppend         = 'a'
	opDict           = 'd'
	opEmptyDict      = '}'
	opAppends        = 'e'
	opGet            = 'g'
	opBinGet         = 'h'
	opLongBinGet     = 'j'
	opList           = 'l'
	opEmptyList      = ']'
	opPut            = 'p'
	opBinPut         = 'q'
	opLongBinPut     = 'r'
	opSetItem        = 's'
	opTuple          = 't'
	opEmptyTuple     = ')'
	opSetItems       = 'u'
	opBinFloat       = 'G'
	opProto          = 0x80
	opTuple1         = 0x85
	opTuple2         = 0x86
	opTuple3         = 0x87
	opNewTrue        = 0x88
	opNewFalse       = 0x89
	opLong1          = 0x8a
	opLong4          = 0x8b
	opBinBytes       = 'B'
	opShortBinBytes  = 'C'
	opShortBinUnicod = 0x8c
	opBinUnicode8    = 0x8d
	opBinBytes8      = 0x8e
	opMemoize        = 0x94
	opFrame          = 0x95
	opStackGlobal    = 0x93
	opGlobal         = 'c'
	opReduce         = 'R'
)

// Protocol is the pickle protocol Marshal writes: Python 3.8+'s
// HIGHEST_PROTOCOL, which SQLAlchemy's PickleType uses.
const Protocol = 5

// MaxDepth bounds the nesting of containers, in both directions.
const MaxDepth = 512

// Frame sizes of Python's pickler (_FRAME_SIZE_TARGET, _FRAME_SIZE_MIN).
const (
	frameSizeTarget = 64 * 1024
	frameSizeMin    = 4
	batchSize       = 1000
)

// ErrUnsupported is wrapped by Marshal errors for a value that is not one
// of the types a result may be.
var ErrUnsupported = errors.New("pickle: unsupported value")

// Call is a call of a module-level callable, as a pickle records an
// object's reconstruction (STACK_GLOBAL, then REDUCE with Args). Marshal
// writes it; Unmarshal returns it only for the names its Globals option
// allows, and never calls anything: a Call is data.
type Call struct {
	Module, Name string
	Args         Tuple
}

// Tuple is a Python tuple for Marshal. Unmarshal returns tuples as []any,
// as the JSON backends return them.
type Tuple []any

// Marshal returns the protocol 5 pickle of v. It accepts nil, bool, Go's
// integer types and *big.Int, float64 and float32, string (valid UTF-8),
// []byte (bytes), []any and []string (list), Tuple, map[string]any (a dict
// with sorted keys), protocol.Dict (a dict in its order) and
// *protocol.Exception (Celery's exception dict, exc_message a tuple as
// Celery pickles it); other Go values go through protocol.FromGo first.
func Marshal(v any) ([]byte, error) {
	e := &encoder{buf: make([]byte, 0, 64), frameStart: -1}
	e.buf = append(e.buf, opProto, Protocol)
	e.startFrame()
	if err := e.value(v, 0); err != nil {
		return nil, err
	}
	e.buf = append(e.buf, opStop)
	e.commitFrame()
	return e.buf, nil
}

type encoder struct {
	buf []byte
	// frameStart is the offset of the current frame's 9-byte header, -1
	// when no frame is open.
	frameStart int
}

func (e *encoder) startFrame() {
	e.frameStart = len(e.buf)
	e.buf = append(e.buf, opFrame, 0, 0, 0, 0, 0, 0, 0, 0)
}

// commitFrame closes the open frame: its length is written in the header,
// or the header is removed when the frame is shorter than frameSizeMin,
// as the C pickler does.
func (e *encoder) commitFrame() {
	if e.frameStart < 0 {
		return
	}
	n := len(e.buf) - e.frameStart - 9
	if n >= frameSizeMin {
		binary.LittleEndian.PutUint64(e.buf[e.frameStart+1:], uint64(n))
	} else {
		copy(e.buf[e.frameStart:], e.buf[e.frameStart+9:])
		e.buf = e.buf[:len(e.buf)-9]
	}
	e.frameStart = -1
}

// boundary is the C pickler's opcode boundary: a frame that reached the
// target size is committed and a new one opened.
func (e *encoder) boundary() {
	if e.frameStart >= 0 && len(e.buf)-e.frameStart-9 >= frameSizeTarget {
		e.commitFrame()
		e.startFrame()
	}
}

// payload writes header then data; a payload of frameSizeTarget bytes or
// more is written outside any frame, as Python does.
func (e *encoder) payload(header, data []byte) {
	if len(data) >= frameSizeTarget {
		e.commitFrame()
		e.buf = append(e.buf, header...)
		e.buf = append(e.buf, data...)
		e.startFrame()
		return
	}
	e.buf = append(e.buf, header...)
	e.buf = append(e.buf, data...)
}

func (e *encoder) value(v any, depth int) error {
	if depth > MaxDepth {
		return fmt.Errorf("%w: nesting deeper than %d (cyclic value?)", ErrUnsupported, MaxDepth)
	}
	switch x := v.(type) {
	case nil:
		e.buf = append(e.buf, opNone)
	case bool:
		if x {
			e.buf = append(e.buf, opNewTrue)
		} else {
			e.buf = append(e.buf, opNewFalse)
		}
	case int:
		e.int64(int64(x))
	case int64:
		e.int64(x)
	case int32:
		e.int64(int64(x))
	case int16:
		e.int64(int64(x))
	case int8:
		e.int64(int64(x))
	case uint:
		e.bigInt(new(big.Int).SetUint64(uint64(x)))
	case uint64:
		e.bigInt(new(big.Int).SetUint64(x))
	case uint32:
		e.int64(int64(x))
	case uint16:
		e.int64(int64(x))
	case uint8:
		e.int64(int64(x))
	case *big.Int:
		if x == nil {
			e.buf = append(e.buf, opNone)
			break
		}
		e.bigInt(x)
	case float64:
		e.float(x)
	case float32:
		e.float(float64(x))
	case string:
		return e.str(x)
	case []byte:
		e.bytes(x)
	case []any:
		return e.list(x, depth)
	case []string:
		l := make([]any, len(x))
		for i, s := range x {
			l[i] = s
		}
		return e.list(l, depth)
	case Tuple:
		return e.tuple(x, depth)
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		d := make(protocol.Dict, len(keys))
		for i, k := range keys {
			d[i] = protocol.Item{Key: k, Value: x[k]}
		}
		return e.dict(d, depth)
	case protocol.Dict:
		return e.dict(x, depth)
	case *protocol.Exception:
		if x == nil {
			e.buf = append(e.buf, opNone)
			break
		}
		return e.value(ExceptionValue(x), depth)
	case Call:
		return e.call(x, depth)
	case *Call:
		if x == nil {
			e.buf = append(e.buf, opNone)
			break
		}
		return e.call(*x, depth)
	default:
		c, err := protocol.FromGo(v)
		if err != nil {
			return fmt.Errorf("%w: %T: %w", ErrUnsupported, v, err)
		}
		if reflect.TypeOf(c) == reflect.TypeOf(v) {
			return fmt.Errorf("%w: %T", ErrUnsupported, v)
		}
		return e.value(c, depth+1)
	}
	return nil
}

// ExceptionValue returns the exception dict Celery pickles for exc:
// exc_type, exc_message (a tuple of the arguments), exc_module.
func ExceptionValue(exc *protocol.Exception) protocol.Dict {
	var mod any
	if exc.Module != "" {
		mod = exc.Module
	}
	args := Tuple(exc.Args)
	if args == nil {
		args = Tuple{}
	}
	return protocol.Dict{{Key: "exc_type", Value: exc.Type}, {Key: "exc_message", Value: args}, {Key: "exc_module", Value: mod}}
}

func (e *encoder) int64(n int64) {
	switch {
	case n >= 0 && n <= 0xff:
		e.buf = append(e.buf, opBinInt1, byte(n))
	case n >= 0 && n <= 0xffff:
		e.buf = append(e.buf, opBinInt2, byte(n), byte(n>>8))
	case n >= math.MinInt32 && n <= math.MaxInt32:
		e.buf = append(e.buf, opBinInt)
		e.buf = binary.LittleEndian.AppendUint32(e.buf, uint32(int32(n)))
	default:
		e.bigInt(big.NewInt(n))
	}
}

// bigInt writes LONG1 or LONG4 with the two's complement little-endian
// bytes Python's encode_long gives: the fewest that hold the sign.
func (e *encoder) bigInt(n *big.Int) {
	if n.IsInt64() {
		if v := n.Int64(); v >= math.MinInt32 && v <= math.MaxInt32 {
			e.int64(v)
			return
		}
	}
	b := encodeLong(n)
	if len(b) < 256 {
		e.buf = append(e.buf, opLong1, byte(len(b)))
	} else {
		e.buf = append(e.buf, opLong4)
		e.buf = binary.LittleEndian.AppendUint32(e.buf, uint32(len(b)))
	}
	e.buf = append(e.buf, b...)
}

func encodeLong(n *big.Int) []byte {
	if n.Sign() == 0 {
		return nil
	}
	nbytes := n.BitLen()/8 + 1
	var mag *big.Int
	if n.Sign() > 0 {
		mag = n
	} else {
		// Two's complement: 2^(8*nbytes) + n.
		mag = new(big.Int).Lsh(big.NewInt(1), uint(8*nbytes))
		mag.Add(mag, n)
	}
	be := mag.FillBytes(make([]byte, nbytes))
	slices.Reverse(be)
	if n.Sign() < 0 && nbytes > 1 && be[nbytes-1] == 0xff && be[nbytes-2]&0x80 != 0 {
		be = be[:nbytes-1]
	}
	return be
}

func (e *encoder) float(f float64) {
	e.buf = append(e.buf, opBinFloat)
	e.buf = binary.BigEndian.AppendUint64(e.buf, math.Float64bits(f))
}

func (e *encoder) str(s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: string %q is not valid UTF-8", ErrUnsupported, truncate(s))
	}
	n := len(s)
	var h []byte
	switch {
	case n < 256:
		h = []byte{opShortBinUnicod, byte(n)}
	case n <= math.MaxUint32:
		h = binary.LittleEndian.AppendUint32([]byte{opBinUnicode}, uint32(n))
	default:
		h = binary.LittleEndian.AppendUint64([]byte{opBinUnicode8}, uint64(n))
	}
	e.payload(h, []byte(s))
	e.buf = append(e.buf, opMemoize)
	return nil
}

func (e *encoder) bytes(b []byte) {
	n := len(b)
	var h []byte
	switch {
	case n < 256:
		h = []byte{opShortBinBytes, byte(n)}
	case n <= math.MaxUint32:
		h = binary.LittleEndian.AppendUint32([]byte{opBinBytes}, uint32(n))
	default:
		h = binary.LittleEndian.AppendUint64([]byte{opBinBytes8}, uint64(n))
	}
	e.payload(h, b)
	e.buf = append(e.buf, opMemoize)
}

func (e *encoder) list(l []any, depth int) error {
	e.buf = append(e.buf, opEmptyList, opMemoize)
	return e.batch(len(l), opAppend, opAppends, func(i int) error {
		return e.item(l[i], depth)
	})
}

func (e *encoder) dict(d protocol.Dict, depth int) error {
	e.buf = append(e.buf, opEmptyDict, opMemoize)
	return e.batch(len(d), opSetItem, opSetItems, func(i int) error {
		if err := e.str(d[i].Key); err != nil {
			return err
		}
		e.boundary()
		return e.item(d[i].Value, depth)
	})
}

// batch writes n items as the C pickler's batch_list_exact and
// batch_dict_exact do: one item and APPEND/SETITEM, or MARK, up to
// batchSize items, APPENDS/SETITEMS, repeated.
func (e *encoder) batch(n int, one, many byte, item func(int) error) error {
	if n == 0 {
		return nil
	}
	if n == 1 {
		if err := item(0); err != nil {
			return err
		}
		e.buf = append(e.buf, one)
		e.boundary()
		return nil
	}
	for i := 0; i < n; {
		e.buf = append(e.buf, opMark)
		for end := min(i+batchSize, n); i < end; i++ {
			if err := item(i); err != nil {
				return err
			}
		}
		e.buf = append(e.buf, many)
		e.boundary()
	}
	return nil
}

// item writes one contained value and marks an opcode boundary.
func (e *encoder) item(v any, depth int) error {
	if err := e.value(v, depth+1); err != nil {
		return err
	}
	e.boundary()
	return nil
}

func (e *encoder) tuple(t Tuple, depth int) error {
	if len(t) == 0 {
		e.buf = append(e.buf, opEmptyTuple)
		return nil
	}
	if len(t) <= 3 {
		for _, v := range t {
			if err := e.item(v, depth); err != nil {
				return err
			}
		}
		e.buf = append(e.buf, opTuple1+byte(len(t)-1), opMemoize)
		return nil
	}
	e.buf = append(e.buf, opMark)
	for _, v := range t {
		if err := e.item(v, depth); err != nil {
			return err
		}
	}
	e.buf = append(e.buf, opTuple, opMemoize)
	return nil
}

func (e *encoder) call(c Call, depth int) error {
	if c.Module == "" || c.Name == "" {
		return fmt.Errorf("%w: call without a module or name", ErrUnsupported)
	}
	if err := e.str(c.Module); err != nil {
		return err
	}
	if err := e.str(c.Name); err != nil {
		return err
	}
	e.buf = append(e.buf, opStackGlobal, opMemoize)
	args := c.Args
	if args == nil {
		args = Tuple{}
	}
	if err := e.tuple(args, depth+1); err != nil {
		return err
	}
	e.buf = append(e.buf, opReduce, opMemoize)
	return nil
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
