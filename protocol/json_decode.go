package protocol

import (
	"fmt"
	"math"
	"math/big"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// MaxJSONDepth is the deepest nesting of arrays and objects UnmarshalJSON
// accepts. Deeper input is an error, never a stack overflow.
const MaxJSONDepth = 128

// MaxIntDigits is Python's limit on the digits of an integer read from or
// written to text (sys.get_int_max_str_digits() of Python 3.11): longer
// integers are an error both ways, as they are for Python peers.
const MaxIntDigits = 4300

// SyntaxError is a JSON decoding error with the byte offset where it was
// detected.
type SyntaxError struct {
	Offset int    // byte offset in the input
	Msg    string // what was wrong
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("json: %s at offset %d", e.Msg, e.Offset)
}

// UnmarshalJSON decodes JSON as Python's json.loads reads it (as kombu calls
// it on a UTF-8 body) into the value types of the package:
//
//   - integers become int64, or *big.Int outside the int64 range;
//   - numbers with '.', 'e' or 'E' become float64 (1e400 is +Inf, as in
//     Python); the bare literals NaN, Infinity and -Infinity are accepted;
//   - objects become map[string]any; a duplicate key keeps its last value;
//   - arrays become []any; strings have every escape resolved, a surrogate
//     pair becomes one rune and a lone surrogate becomes U+FFFD.
//
// Like Python, it rejects invalid UTF-8, control characters inside strings,
// integers of more than MaxIntDigits digits, a leading byte order mark
// (Python: "Unexpected UTF-8 BOM") and anything
// after the value other than whitespace. Nesting deeper than MaxJSONDepth is
// an error. Errors are *SyntaxError.
func UnmarshalJSON(data []byte) (any, error) { return unmarshalJSONLimited(data, 0) }

// unmarshalJSONLimited is UnmarshalJSON reading at most maxValues values
// (0: no cap); past them it returns an error wrapping errTooManyValues.
func unmarshalJSONLimited(data []byte, maxValues int) (any, error) {
	d := jsonDecoder{data: data, maxValues: maxValues}
	if len(data) >= 3 && data[0] == 0xEF && data[1] == 0xBB && data[2] == 0xBF {
		return nil, d.errorf(0, "unexpected UTF-8 BOM")
	}
	d.skipSpace()
	v, err := d.value()
	if err != nil {
		return nil, err
	}
	d.skipSpace()
	if d.pos < len(d.data) {
		return nil, d.errorf(d.pos, "extra data after the value")
	}
	return v, nil
}

type jsonDecoder struct {
	data    []byte
	pos     int
	depth   int
	buf     []byte // scratch for strings with escapes
	ordered bool   // objects become Dict (key order kept) instead of maps
	// values counts the values read, up to maxValues (0: no cap).
	values, maxValues int
}

// unmarshalJSONOrdered is UnmarshalJSON with objects decoded as Dict, so the
// key order of the input is kept (a duplicate key keeps its first position
// and its last value, as in a Python dict).
func unmarshalJSONOrdered(data []byte) (any, error) {
	d := jsonDecoder{data: data, ordered: true}
	d.skipSpace()
	v, err := d.value()
	if err != nil {
		return nil, err
	}
	d.skipSpace()
	if d.pos < len(d.data) {
		return nil, d.errorf(d.pos, "extra data after the value")
	}
	return v, nil
}

func (d *jsonDecoder) errorf(off int, format string, args ...any) error {
	return &SyntaxError{Offset: off, Msg: fmt.Sprintf(format, args...)}
}

func (d *jsonDecoder) skipSpace() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

func (d *jsonDecoder) unexpected() error {
	if d.pos >= len(d.data) {
		return d.errorf(d.pos, "unexpected end of input")
	}
	c := d.data[d.pos]
	if c < utf8.RuneSelf {
		return d.errorf(d.pos, "unexpected character %q", c)
	}
	return d.errorf(d.pos, "unexpected byte 0x%02x", c)
}

func (d *jsonDecoder) literal(word string) bool {
	if len(d.data)-d.pos >= len(word) && string(d.data[d.pos:d.pos+len(word)]) == word {
		d.pos += len(word)
		return true
	}
	return false
}

// value decodes one value; leading whitespace is already skipped.
func (d *jsonDecoder) value() (any, error) {
	if d.pos >= len(d.data) {
		return nil, d.unexpected()
	}
	if d.maxValues > 0 {
		if d.values++; d.values > d.maxValues {
			return nil, fmt.Errorf("json: %w (at offset %d)", errTooManyValues, d.pos)
		}
	}
	switch c := d.data[d.pos]; c {
	case '{':
		return d.object()
	case '[':
		return d.array()
	case '"':
		return d.str()
	case 't':
		if d.literal("true") {
			return true, nil
		}
	case 'f':
		if d.literal("false") {
			return false, nil
		}
	case 'n':
		if d.literal("null") {
			return nil, nil
		}
	case 'N':
		if d.literal("NaN") {
			return math.NaN(), nil
		}
	case 'I':
		if d.literal("Infinity") {
			return math.Inf(1), nil
		}
	case '-':
		if d.pos+1 < len(d.data) && d.data[d.pos+1] == 'I' {
			if d.literal("-Infinity") {
				return math.Inf(-1), nil
			}
			break
		}
		return d.number()
	default:
		if c >= '0' && c <= '9' {
			return d.number()
		}
	}
	return nil, d.unexpected()
}

func (d *jsonDecoder) enter() error {
	d.depth++
	if d.depth > MaxJSONDepth {
		return d.errorf(d.pos, "nesting deeper than %d", MaxJSONDepth)
	}
	return nil
}

func (d *jsonDecoder) object() (any, error) {
	if err := d.enter(); err != nil {
		return nil, err
	}
	d.pos++ // '{'
	var m map[string]any
	var od Dict
	if d.ordered {
		od = Dict{}
	} else {
		m = make(map[string]any)
	}
	done := func() any {
		d.depth--
		if d.ordered {
			return od
		}
		return m
	}
	d.skipSpace()
	if d.pos < len(d.data) && d.data[d.pos] == '}' {
		d.pos++
		return done(), nil
	}
	for {
		if d.pos >= len(d.data) || d.data[d.pos] != '"' {
			if d.pos < len(d.data) {
				return nil, d.errorf(d.pos, "expecting property name enclosed in double quotes")
			}
			return nil, d.unexpected()
		}
		k, err := d.str()
		if err != nil {
			return nil, err
		}
		d.skipSpace()
		if d.pos >= len(d.data) || d.data[d.pos] != ':' {
			if d.pos < len(d.data) {
				return nil, d.errorf(d.pos, "expecting ':' delimiter")
			}
			return nil, d.unexpected()
		}
		d.pos++
		d.skipSpace()
		v, err := d.value()
		if err != nil {
			return nil, err
		}
		if d.ordered {
			od = od.set(k, v)
		} else {
			m[k] = v
		}
		d.skipSpace()
		if d.pos >= len(d.data) {
			return nil, d.unexpected()
		}
		switch d.data[d.pos] {
		case ',':
			d.pos++
			d.skipSpace()
		case '}':
			d.pos++
			return done(), nil
		default:
			return nil, d.errorf(d.pos, "expecting ',' delimiter")
		}
	}
}

func (d *jsonDecoder) array() (any, error) {
	if err := d.enter(); err != nil {
		return nil, err
	}
	d.pos++ // '['
	a := make([]any, 0, 4)
	d.skipSpace()
	if d.pos < len(d.data) && d.data[d.pos] == ']' {
		d.pos++
		d.depth--
		return a, nil
	}
	for {
		v, err := d.value()
		if err != nil {
			return nil, err
		}
		a = append(a, v)
		d.skipSpace()
		if d.pos >= len(d.data) {
			return nil, d.unexpected()
		}
		switch d.data[d.pos] {
		case ',':
			d.pos++
			d.skipSpace()
		case ']':
			d.pos++
			d.depth--
			return a, nil
		default:
			return nil, d.errorf(d.pos, "expecting ',' delimiter")
		}
	}
}

// number reads Python's JSON number grammar:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?
func (d *jsonDecoder) number() (any, error) {
	start := d.pos
	p := d.pos
	data := d.data
	if data[p] == '-' {
		p++
	}
	if p >= len(data) || data[p] < '0' || data[p] > '9' {
		d.pos = p
		return nil, d.unexpected()
	}
	if data[p] == '0' {
		p++
	} else {
		for p < len(data) && data[p] >= '0' && data[p] <= '9' {
			p++
		}
	}
	isFloat := false
	// The fraction and exponent are optional: if their digits are missing,
	// Python's scanner ends the number before them (then the rest is
	// garbage); do the same.
	if p < len(data) && data[p] == '.' && p+1 < len(data) && data[p+1] >= '0' && data[p+1] <= '9' {
		isFloat = true
		p += 2
		for p < len(data) && data[p] >= '0' && data[p] <= '9' {
			p++
		}
	}
	if p < len(data) && (data[p] == 'e' || data[p] == 'E') {
		q := p + 1
		if q < len(data) && (data[q] == '+' || data[q] == '-') {
			q++
		}
		if q < len(data) && data[q] >= '0' && data[q] <= '9' {
			isFloat = true
			for q < len(data) && data[q] >= '0' && data[q] <= '9' {
				q++
			}
			p = q
		}
	}
	d.pos = p
	text := data[start:p]
	if isFloat {
		f, err := strconv.ParseFloat(string(text), 64)
		if err != nil {
			// Out of range: ParseFloat returns ±Inf or 0, as Python's
			// float() does.
			if ne, ok := err.(*strconv.NumError); !ok || ne.Err != strconv.ErrRange {
				return nil, d.errorf(start, "invalid number %q", text)
			}
		}
		return f, nil
	}
	// Fast path: up to 18 digits always fit an int64.
	digits := text
	neg := false
	if digits[0] == '-' {
		neg = true
		digits = digits[1:]
	}
	if len(digits) <= 18 {
		var n int64
		for _, c := range digits {
			n = n*10 + int64(c-'0')
		}
		if neg {
			n = -n
		}
		return n, nil
	}
	if len(digits) > MaxIntDigits {
		return nil, d.errorf(start, "integer of %d digits exceeds Python's limit of %d", len(digits), MaxIntDigits)
	}
	if n, err := strconv.ParseInt(string(text), 10, 64); err == nil {
		return n, nil
	}
	b, ok := new(big.Int).SetString(string(text), 10)
	if !ok {
		return nil, d.errorf(start, "invalid number %q", text)
	}
	return b, nil
}

// str reads a string; d.pos is at the opening quote.
func (d *jsonDecoder) str() (string, error) {
	start := d.pos + 1
	p := start
	data := d.data
	// Fast path: no escapes, ASCII only.
	for p < len(data) {
		c := data[p]
		if c == '"' {
			d.pos = p + 1
			return string(data[start:p]), nil
		}
		if c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
			break
		}
		p++
	}
	buf := append(d.buf[:0], data[start:p]...)
	for {
		if p >= len(data) {
			return "", d.errorf(start-1, "unterminated string")
		}
		c := data[p]
		switch {
		case c == '"':
			d.pos = p + 1
			d.buf = buf
			return string(buf), nil
		case c == '\\':
			if p+1 >= len(data) {
				return "", d.errorf(start-1, "unterminated string")
			}
			esc := data[p+1]
			p += 2
			switch esc {
			case '"', '\\', '/':
				buf = append(buf, esc)
			case 'b':
				buf = append(buf, '\b')
			case 'f':
				buf = append(buf, '\f')
			case 'n':
				buf = append(buf, '\n')
			case 'r':
				buf = append(buf, '\r')
			case 't':
				buf = append(buf, '\t')
			case 'u':
				r, ok := hex4(data, p)
				if !ok {
					return "", d.errorf(p-2, "invalid \\uXXXX escape")
				}
				p += 4
				if utf16.IsSurrogate(r) {
					if r < 0xDC00 && p+6 <= len(data) && data[p] == '\\' && data[p+1] == 'u' {
						if r2, ok := hex4(data, p+2); ok && r2 >= 0xDC00 && r2 <= 0xDFFF {
							r = utf16.DecodeRune(r, r2)
							p += 6
						} else {
							r = utf8.RuneError
						}
					} else {
						r = utf8.RuneError
					}
				}
				buf = utf8.AppendRune(buf, r)
			default:
				return "", d.errorf(p-2, "invalid \\escape")
			}
		case c < 0x20:
			return "", d.errorf(p, "invalid control character in string")
		case c < utf8.RuneSelf:
			buf = append(buf, c)
			p++
		default:
			r, size := utf8.DecodeRune(data[p:])
			if r == utf8.RuneError && size <= 1 {
				return "", d.errorf(p, "invalid UTF-8")
			}
			buf = append(buf, data[p:p+size]...)
			p += size
		}
	}
}

func hex4(data []byte, p int) (rune, bool) {
	if p+4 > len(data) {
		return 0, false
	}
	var r rune
	for _, c := range data[p : p+4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	return r, true
}

// set replaces the value of key, or appends it.
func (d Dict) set(key string, v any) Dict {
	for i := range d {
		if d[i].Key == key {
			d[i].Value = v
			return d
		}
	}
	return append(d, Item{key, v})
}
