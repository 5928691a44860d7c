package protocol

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/big"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// ErrUnsupportedValue is wrapped by encoding errors for values a
// serializer cannot carry (bytes in JSON, channels, functions, maps with
// keys that are not strings or integers, ...).
var ErrUnsupportedValue = errors.New("unsupported value")

// MarshalJSON encodes v exactly as Python's json.dumps does with its
// defaults (what kombu sends): ", " and ": " separators, every non-ASCII
// character escaped as \uXXXX (surrogate pairs above U+FFFF), no HTML
// escaping, floats in Python's repr form (always with a '.' or an
// exponent, so Python reads a float back), NaN, Infinity and -Infinity as
// bare literals and *big.Int as plain digits.
//
// It accepts the value types of the package, Dict (keys in order), time.Time
// (kombu's form: "2024-01-02T03:04:05.678901Z", no fraction when the
// microseconds are 0), and every other Go value by the rule of FromGo:
// structs by their json tags with a float64 field still a float, typed
// slices, maps, pointers, json.Marshaler and encoding.TextMarshaler types.
// Keys of Go maps are written sorted so the output is deterministic. Strings that are not valid UTF-8 have the bad bytes
// written as U+FFFD.
//
// Errors are *EncodeError. []byte is such an error: Python's JSON cannot carry
// bytes (kombu raises EncodeError); use msgpack for binary data.
func MarshalJSON(v any) ([]byte, error) {
	return AppendJSON(make([]byte, 0, 128), v, 0)
}

// AppendJSON appends the encoding of v, as MarshalJSON writes it, to dst
// and returns the extended buffer, so that a value can be written in
// pieces into one buffer. depth is how deeply v is nested in the whole
// value (0 for the value itself, 1 for a member of an object written
// around it), so that a value written in pieces meets MaxJSONDepth where
// MarshalJSON would. Errors are those of MarshalJSON; dst is then
// returned as it was given.
func AppendJSON(dst []byte, v any, depth int) ([]byte, error) {
	e := jsonEncoder{buf: dst}
	if err := e.value(v, depth); err != nil {
		return dst, err
	}
	return e.buf, nil
}

// AppendJSONString appends s as MarshalJSON writes a string: quoted, with
// every non-ASCII character escaped as Python's json.dumps does.
func AppendJSONString(dst []byte, s string) []byte { return appendPyString(dst, s) }

type jsonEncoder struct {
	buf []byte
}

// EncodeError is the error of MarshalJSON, of msgpack encoding and of
// Encode's body when a value cannot be serialized (Celery: kombu's
// EncodeError). It wraps ErrUnsupportedValue.
type EncodeError struct {
	Msg string // what could not be encoded
	Err error  // underlying error, may be nil
}

func (e *EncodeError) Error() string {
	msg := "cannot encode value: " + e.Msg
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns ErrUnsupportedValue and the underlying error.
func (e *EncodeError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrUnsupportedValue, e.Err}
	}
	return []error{ErrUnsupportedValue}
}

func unsupported(format string, args ...any) error {
	return &EncodeError{Msg: fmt.Sprintf(format, args...)}
}

func (e *jsonEncoder) value(v any, depth int) error {
	if depth > MaxJSONDepth {
		return unsupported("nesting deeper than %d (cyclic value?)", MaxJSONDepth)
	}
	switch x := v.(type) {
	case nil:
		e.buf = append(e.buf, "null"...)
	case string:
		e.buf = appendPyString(e.buf, x)
	case bool:
		if x {
			e.buf = append(e.buf, "true"...)
		} else {
			e.buf = append(e.buf, "false"...)
		}
	case int64:
		e.buf = strconv.AppendInt(e.buf, x, 10)
	case int:
		e.buf = strconv.AppendInt(e.buf, int64(x), 10)
	case int32:
		e.buf = strconv.AppendInt(e.buf, int64(x), 10)
	case int16:
		e.buf = strconv.AppendInt(e.buf, int64(x), 10)
	case int8:
		e.buf = strconv.AppendInt(e.buf, int64(x), 10)
	case uint:
		e.buf = strconv.AppendUint(e.buf, uint64(x), 10)
	case uint64:
		e.buf = strconv.AppendUint(e.buf, x, 10)
	case uint32:
		e.buf = strconv.AppendUint(e.buf, uint64(x), 10)
	case uint16:
		e.buf = strconv.AppendUint(e.buf, uint64(x), 10)
	case uint8:
		e.buf = strconv.AppendUint(e.buf, uint64(x), 10)
	case float64:
		e.buf = appendPyFloat(e.buf, x, 64)
	case float32:
		e.buf = appendPyFloat(e.buf, float64(x), 32)
	case *big.Int:
		if x == nil {
			e.buf = append(e.buf, "null"...)
		} else {
			if x.BitLen() > MaxIntDigits*4 { // a digit holds less than 4 bits
				return unsupported("integer of more than %d digits (Python's limit)", MaxIntDigits)
			}
			start := len(e.buf)
			e.buf = x.Append(e.buf, 10)
			n := len(e.buf) - start
			if x.Sign() < 0 {
				n-- // the minus sign
			}
			if n > MaxIntDigits {
				e.buf = e.buf[:start]
				return unsupported("integer of %d digits exceeds Python's limit of %d", n, MaxIntDigits)
			}
		}
	case []any:
		e.buf = append(e.buf, '[')
		for i, it := range x {
			if i > 0 {
				e.buf = append(e.buf, ", "...)
			}
			if err := e.value(it, depth+1); err != nil {
				return err
			}
		}
		e.buf = append(e.buf, ']')
	case map[string]any:
		return e.stringMap(x, depth)
	case Dict:
		e.buf = append(e.buf, '{')
		for i, it := range x {
			if i > 0 {
				e.buf = append(e.buf, ", "...)
			}
			e.buf = appendPyString(e.buf, it.Key)
			e.buf = append(e.buf, ": "...)
			if err := e.value(it.Value, depth+1); err != nil {
				return err
			}
		}
		e.buf = append(e.buf, '}')
	case []string:
		e.buf = append(e.buf, '[')
		for i, s := range x {
			if i > 0 {
				e.buf = append(e.buf, ", "...)
			}
			e.buf = appendPyString(e.buf, s)
		}
		e.buf = append(e.buf, ']')
	case []byte:
		return unsupported("bytes cannot be encoded as JSON (kombu raises EncodeError); use msgpack")
	case time.Time:
		e.buf = append(e.buf, '"')
		e.buf = appendKombuTime(e.buf, x)
		e.buf = append(e.buf, '"')
	case Signature:
		return e.value(x.Value(), depth)
	case *Signature:
		if x == nil {
			e.buf = append(e.buf, "null"...)
			return nil
		}
		return e.value(x.Value(), depth)
	case *Exception:
		if x == nil {
			e.buf = append(e.buf, "null"...)
			return nil
		}
		return e.value(x.Value(), depth)
	default:
		// Structs, typed slices and maps, pointers, marshalers: the one
		// Go-to-Python rule of FromGo, then the plain values it gives.
		c, err := fromGo(v, depth)
		if err != nil {
			return err
		}
		return e.value(c, depth)
	}
	return nil
}

func (e *jsonEncoder) stringMap(m map[string]any, depth int) error {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	e.buf = append(e.buf, '{')
	for i, k := range keys {
		if i > 0 {
			e.buf = append(e.buf, ", "...)
		}
		e.buf = appendPyString(e.buf, k)
		e.buf = append(e.buf, ": "...)
		if err := e.value(m[k], depth+1); err != nil {
			return err
		}
	}
	e.buf = append(e.buf, '}')
	return nil
}

const hexDigits = "0123456789abcdef"

// appendPyString appends s as a JSON string with Python's ensure_ascii
// escaping.
func appendPyString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != 0x7f {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"':
				b = append(b, '\\', '"')
			case '\\':
				b = append(b, '\\', '\\')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = appendU4(b, rune(c))
			}
			i++
			start = i
			continue
		}
		b = append(b, s[start:i]...)
		r, size := utf8.DecodeRuneInString(s[i:])
		if r >= 0x10000 {
			r -= 0x10000
			b = appendU4(b, 0xD800+(r>>10))
			b = appendU4(b, 0xDC00+(r&0x3FF))
		} else {
			b = appendU4(b, r) // includes U+FFFD for invalid bytes
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

func appendU4(b []byte, r rune) []byte {
	return append(b, '\\', 'u', hexDigits[r>>12&0xF], hexDigits[r>>8&0xF], hexDigits[r>>4&0xF], hexDigits[r&0xF])
}

// appendPyFloat appends f as Python's repr(float) writes it: the shortest
// round-trip digits, in exponent form when the decimal exponent is below -4
// or at least 16, and always with a '.' or an exponent.
func appendPyFloat(b []byte, f float64, bits int) []byte {
	switch {
	case math.IsNaN(f):
		return append(b, "NaN"...)
	case math.IsInf(f, 1):
		return append(b, "Infinity"...)
	case math.IsInf(f, -1):
		return append(b, "-Infinity"...)
	}
	var scratch [32]byte
	sci := strconv.AppendFloat(scratch[:0], f, 'e', -1, bits)
	// sci is [-]d[.ddd]e±XX
	ei := bytes.IndexByte(sci, 'e')
	exp, _ := strconv.Atoi(string(sci[ei+1:]))
	if exp < -4 || exp >= 16 {
		return append(b, sci...)
	}
	mant := sci[:ei]
	if mant[0] == '-' {
		b = append(b, '-')
		mant = mant[1:]
	}
	// digits without the point
	var digs [24]byte
	dd := append(digs[:0], mant[0])
	if len(mant) > 2 {
		dd = append(dd, mant[2:]...)
	}
	if exp >= 0 {
		intLen := exp + 1
		if len(dd) <= intLen {
			b = append(b, dd...)
			for i := len(dd); i < intLen; i++ {
				b = append(b, '0')
			}
			return append(b, '.', '0')
		}
		b = append(b, dd[:intLen]...)
		b = append(b, '.')
		return append(b, dd[intLen:]...)
	}
	b = append(b, '0', '.')
	for i := 0; i < -exp-1; i++ {
		b = append(b, '0')
	}
	return append(b, dd...)
}

// appendKombuTime appends t as kombu's JSON encoder writes an aware
// datetime: isoformat() with "+00:00" replaced by "Z".
func appendKombuTime(b []byte, t time.Time) []byte {
	b = appendISOCore(b, t)
	_, off := t.Zone()
	if off == 0 {
		return append(b, 'Z')
	}
	return appendOffset(b, off)
}

// appendISOCore writes YYYY-MM-DDTHH:MM:SS[.ffffff] (microseconds, omitted
// when zero) of t in its own location.
func appendISOCore(b []byte, t time.Time) []byte {
	b = t.AppendFormat(b, "2006-01-02T15:04:05")
	if us := t.Nanosecond() / 1000; us != 0 {
		b = append(b, '.')
		b = append(b, byte('0'+us/100000), byte('0'+us/10000%10), byte('0'+us/1000%10),
			byte('0'+us/100%10), byte('0'+us/10%10), byte('0'+us%10))
	}
	return b
}

func appendOffset(b []byte, off int) []byte {
	sign := byte('+')
	if off < 0 {
		sign = '-'
		off = -off
	}
	h, m, s := off/3600, off/60%60, off%60
	b = append(b, sign, byte('0'+h/10), byte('0'+h%10), ':', byte('0'+m/10), byte('0'+m%10))
	if s != 0 {
		b = append(b, ':', byte('0'+s/10), byte('0'+s%10))
	}
	return b
}
