package protocol

import (
	"bytes"
	"fmt"
	"math"
	"math/big"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// unmarshalMsgpack decodes a msgpack body as Python's
// msgpack.unpackb(raw=False) reads it, into the package's value types:
// every integer kind becomes int64 (*big.Int for a uint64 above
// MaxInt64), float32 and float64 become float64, str becomes string (it
// must be valid UTF-8), bin becomes []byte, and maps become map[string]any
// (Dict when ordered). Non-string map keys, extension types, trailing
// bytes and nesting deeper than MaxJSONDepth are errors. Every declared
// length (str, bin, array, map) is checked against the bytes left in data
// before anything is allocated for it, so a short body declaring a huge
// value costs nothing: data is at most the body size limit, and so is
// every allocation.
func unmarshalMsgpack(data []byte, ordered bool) (any, error) {
	return unmarshalMsgpackLimited(data, ordered, 0)
}

// unmarshalMsgpackLimited is unmarshalMsgpack reading at most maxValues
// values (0: no cap); an array or map declaring more is refused before
// anything is allocated for it.
func unmarshalMsgpackLimited(data []byte, ordered bool, maxValues int) (any, error) {
	r := bytes.NewReader(data)
	d := msgpackDecoder{dec: msgpack.NewDecoder(r), r: r, ordered: ordered, maxValues: maxValues}
	v, err := d.value(0)
	if err != nil {
		return nil, fmt.Errorf("msgpack: %w (at offset %d)", err, len(data)-r.Len())
	}
	if r.Len() != 0 {
		return nil, fmt.Errorf("msgpack: extra data after the value (at offset %d)", len(data)-r.Len())
	}
	return v, nil
}

type msgpackDecoder struct {
	dec     *msgpack.Decoder
	r       *bytes.Reader
	ordered bool
	// values counts the values read, up to maxValues (0: no cap).
	values, maxValues int
}

// reserve counts n more values, or fails past maxValues.
func (d *msgpackDecoder) reserve(n int) error {
	if d.maxValues <= 0 {
		return nil
	}
	if d.values+n > d.maxValues {
		return errTooManyValues
	}
	d.values += n
	return nil
}

func (d *msgpackDecoder) value(depth int) (any, error) {
	c, err := d.dec.PeekCode()
	if err != nil {
		return nil, err
	}
	if err := d.reserve(1); err != nil {
		return nil, err
	}
	switch {
	case c == msgpcode.Nil:
		return nil, d.dec.DecodeNil()
	case c == msgpcode.False || c == msgpcode.True:
		return d.dec.DecodeBool()
	case c == msgpcode.Float || c == msgpcode.Double:
		return d.dec.DecodeFloat64()
	case c == msgpcode.Uint64:
		u, err := d.dec.DecodeUint64()
		if err != nil {
			return nil, err
		}
		if u > math.MaxInt64 {
			return new(big.Int).SetUint64(u), nil
		}
		return int64(u), nil
	case msgpcode.IsFixedNum(c) || c == msgpcode.Uint8 || c == msgpcode.Uint16 || c == msgpcode.Uint32 ||
		c == msgpcode.Int8 || c == msgpcode.Int16 || c == msgpcode.Int32 || c == msgpcode.Int64:
		return d.dec.DecodeInt64()
	case msgpcode.IsString(c):
		return d.str()
	case msgpcode.IsBin(c):
		return d.raw("bin")
	case msgpcode.IsFixedArray(c) || c == msgpcode.Array16 || c == msgpcode.Array32:
		if depth >= MaxJSONDepth {
			return nil, fmt.Errorf("nesting deeper than %d", MaxJSONDepth)
		}
		n, err := d.dec.DecodeArrayLen()
		if err != nil {
			return nil, err
		}
		if n > d.r.Len() {
			return nil, fmt.Errorf("array of %d items in %d bytes", n, d.r.Len())
		}
		if d.maxValues > 0 && d.values+n > d.maxValues {
			return nil, errTooManyValues
		}
		a := make([]any, n)
		for i := range a {
			if a[i], err = d.value(depth + 1); err != nil {
				return nil, err
			}
		}
		return a, nil
	case msgpcode.IsFixedMap(c) || c == msgpcode.Map16 || c == msgpcode.Map32:
		if depth >= MaxJSONDepth {
			return nil, fmt.Errorf("nesting deeper than %d", MaxJSONDepth)
		}
		n, err := d.dec.DecodeMapLen()
		if err != nil {
			return nil, err
		}
		if 2*n > d.r.Len() {
			return nil, fmt.Errorf("map of %d items in %d bytes", n, d.r.Len())
		}
		if d.maxValues > 0 && d.values+n > d.maxValues {
			return nil, errTooManyValues
		}
		var m map[string]any
		var od Dict
		if d.ordered {
			od = make(Dict, 0, n)
		} else {
			m = make(map[string]any, n)
		}
		for i := 0; i < n; i++ {
			kc, err := d.dec.PeekCode()
			if err != nil {
				return nil, err
			}
			if !msgpcode.IsString(kc) {
				return nil, fmt.Errorf("map key of type 0x%02x is not a string", kc)
			}
			k, err := d.str()
			if err != nil {
				return nil, fmt.Errorf("map key: %w", err)
			}
			v, err := d.value(depth + 1)
			if err != nil {
				return nil, err
			}
			if d.ordered {
				od = od.set(k, v)
			} else {
				m[k] = v
			}
		}
		if d.ordered {
			return od, nil
		}
		return m, nil
	case msgpcode.IsExt(c):
		return nil, fmt.Errorf("extension type 0x%02x is not supported", c)
	}
	return nil, fmt.Errorf("invalid code 0x%02x", c)
}

// raw reads a str or bin header and its payload, refusing a length beyond
// the bytes left before allocating for it (the library would allocate the
// declared length first: 2 GiB for a 5-byte bin32 header).
func (d *msgpackDecoder) raw(kind string) ([]byte, error) {
	n, err := d.dec.DecodeBytesLen()
	if err != nil {
		return nil, err
	}
	if n < 0 || n > d.r.Len() {
		return nil, fmt.Errorf("%s of %d bytes in %d bytes", kind, n, d.r.Len())
	}
	b := make([]byte, n)
	if err := d.dec.ReadFull(b); err != nil {
		return nil, err
	}
	return b, nil
}

// str reads a str as raw does and checks it is UTF-8.
func (d *msgpackDecoder) str() (string, error) {
	b, err := d.raw("str")
	if err != nil {
		return "", err
	}
	if !utf8.Valid(b) {
		return "", fmt.Errorf("str is not valid UTF-8")
	}
	return string(b), nil
}

// marshalMsgpack encodes v as Python's msgpack.packb(use_bin_type=True)
// does: the smallest integer form, float64 for every float, str8 for
// strings of 32..255 bytes, bin for []byte, Dict keys in order and map keys
// sorted. time.Time is written as kombu's ISO string. Every other Go value
// (structs, typed slices and maps, pointers, marshalers) is written by the
// rule of FromGo, as MarshalJSON writes it.
func marshalMsgpack(v any) ([]byte, error) {
	var buf bytes.Buffer
	e := msgpackEncoder{enc: msgpack.NewEncoder(&buf)}
	if err := e.value(v, 0); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

type msgpackEncoder struct {
	enc *msgpack.Encoder
}

func (e *msgpackEncoder) value(v any, depth int) error {
	if depth > MaxJSONDepth {
		return unsupported("nesting deeper than %d (cyclic value?)", MaxJSONDepth)
	}
	enc := e.enc
	switch x := v.(type) {
	case nil:
		return enc.EncodeNil()
	case bool:
		return enc.EncodeBool(x)
	case string:
		return enc.EncodeString(x)
	case []byte:
		return enc.EncodeBytes(x)
	case int64:
		return enc.EncodeInt(x)
	case int:
		return enc.EncodeInt(int64(x))
	case float64:
		return enc.EncodeFloat64(x)
	case float32:
		return enc.EncodeFloat64(float32Value(x))
	case *big.Int:
		if x == nil {
			return enc.EncodeNil()
		}
		if x.IsInt64() {
			return enc.EncodeInt(x.Int64())
		}
		if x.IsUint64() {
			return enc.EncodeUint(x.Uint64())
		}
		return unsupported("integer %s does not fit msgpack's 64 bits", x)
	case []any:
		if err := enc.EncodeArrayLen(len(x)); err != nil {
			return err
		}
		for _, it := range x {
			if err := e.value(it, depth+1); err != nil {
				return err
			}
		}
		return nil
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if err := enc.EncodeMapLen(len(x)); err != nil {
			return err
		}
		for _, k := range keys {
			if err := enc.EncodeString(k); err != nil {
				return err
			}
			if err := e.value(x[k], depth+1); err != nil {
				return err
			}
		}
		return nil
	case Dict:
		if err := enc.EncodeMapLen(len(x)); err != nil {
			return err
		}
		for _, it := range x {
			if err := enc.EncodeString(it.Key); err != nil {
				return err
			}
			if err := e.value(it.Value, depth+1); err != nil {
				return err
			}
		}
		return nil
	case time.Time:
		return enc.EncodeString(string(appendKombuTime(nil, x)))
	case Signature:
		return e.value(x.Value(), depth)
	case *Signature:
		if x == nil {
			return enc.EncodeNil()
		}
		return e.value(x.Value(), depth)
	case *Exception:
		if x == nil {
			return enc.EncodeNil()
		}
		return e.value(x.Value(), depth)
	}
	// Every other Go value by the one Go-to-Python rule of FromGo.
	c, err := fromGo(v, depth)
	if err != nil {
		return err
	}
	return e.value(c, depth)
}
