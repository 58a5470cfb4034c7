package onnx

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Protobuf wire types.
const (
	wireVarint  = 0
	wireFixed64 = 1
	wireBytes   = 2
	wireStartGr = 3
	wireEndGr   = 4
	wireFixed32 = 5
)

var errTruncated = errors.New("truncated input")

// wire is a bounds-checked cursor over a protobuf message.
type wire struct {
	b   []byte
	off int
}

func (w *wire) done() bool { return w.off >= len(w.b) }

func (w *wire) remaining() int { return len(w.b) - w.off }

func (w *wire) varint() (uint64, error) {
	var x uint64
	var s uint
	for i := 0; i < 10; i++ {
		if w.off >= len(w.b) {
			return 0, errTruncated
		}
		c := w.b[w.off]
		w.off++
		if i == 9 && c > 1 {
			return 0, errors.New("varint overflows 64 bits")
		}
		x |= uint64(c&0x7f) << s
		if c < 0x80 {
			return x, nil
		}
		s += 7
	}
	return 0, errors.New("varint overflows 64 bits")
}

func (w *wire) fixed32() (uint32, error) {
	if w.remaining() < 4 {
		return 0, errTruncated
	}
	v := binary.LittleEndian.Uint32(w.b[w.off:])
	w.off += 4
	return v, nil
}

func (w *wire) fixed64() (uint64, error) {
	if w.remaining() < 8 {
		return 0, errTruncated
	}
	v := binary.LittleEndian.Uint64(w.b[w.off:])
	w.off += 8
	return v, nil
}

func (w *wire) bytes() ([]byte, error) {
	n, err := w.varint()
	if err != nil {
		return nil, err
	}
	if n > uint64(w.remaining()) {
		return nil, fmt.Errorf("length %d exceeds the %d bytes left: %w", n, w.remaining(), errTruncated)
	}
	b := w.b[w.off : w.off+int(n)]
	w.off += int(n)
	return b, nil
}

// tag reads a field key.
func (w *wire) tag() (field int, typ int, err error) {
	k, err := w.varint()
	if err != nil {
		return 0, 0, err
	}
	field = int(k >> 3)
	typ = int(k & 7)
	if field <= 0 || k>>3 > math.MaxInt32 {
		return 0, 0, fmt.Errorf("invalid field number %d", k>>3)
	}
	return field, typ, nil
}

// fields reads a message field by field: for each key it calls fn with the
// field number and wire type, and fn reads the value (calling w.skip for a
// field it does not know). A malformed key is returned as it is; an error
// from fn is passed through wrap, when wrap is not nil, which adds the
// message's context (what it is, and the field number f).
func (w *wire) fields(fn func(f, t int) error, wrap func(f int, err error) error) error {
	for !w.done() {
		f, t, err := w.tag()
		if err != nil {
			return err
		}
		if err := fn(f, t); err != nil {
			if wrap != nil {
				err = wrap(f, err)
			}
			return err
		}
	}
	return nil
}

// message reads field f, of wire type t, as an embedded message and decodes
// it with decode.
func message[T any](w *wire, f, t int, decode func([]byte) (T, error)) (T, error) {
	b, err := w.bytesField(f, t)
	if err != nil {
		var zero T
		return zero, err
	}
	return decode(b)
}

// appendMessage reads a repeated embedded message field (one element of
// it), decodes it and appends it to *dst.
func appendMessage[T any](w *wire, f, t int, dst *[]T, decode func([]byte) (T, error)) error {
	v, err := message(w, f, t, decode)
	if err != nil {
		return err
	}
	*dst = append(*dst, v)
	return nil
}

// skip skips a field value of the given wire type.
func (w *wire) skip(typ int) error {
	return w.skipDepth(typ, 0)
}

func (w *wire) skipDepth(typ, depth int) error {
	switch typ {
	case wireVarint:
		_, err := w.varint()
		return err
	case wireFixed64:
		_, err := w.fixed64()
		return err
	case wireFixed32:
		_, err := w.fixed32()
		return err
	case wireBytes:
		_, err := w.bytes()
		return err
	case wireStartGr:
		if depth > 64 {
			return errors.New("groups nested too deeply")
		}
		for {
			_, t, err := w.tag()
			if err != nil {
				return err
			}
			if t == wireEndGr {
				return nil
			}
			if err := w.skipDepth(t, depth+1); err != nil {
				return err
			}
		}
	}
	return fmt.Errorf("invalid wire type %d", typ)
}

// The helpers below read one field value whose key was just read, checking
// the wire type.

func wantType(field, got, want int) error {
	if got != want {
		return fmt.Errorf("field %d has wire type %d, want %d", field, got, want)
	}
	return nil
}

func (w *wire) int64Field(field, typ int) (int64, error) {
	if err := wantType(field, typ, wireVarint); err != nil {
		return 0, err
	}
	v, err := w.varint()
	return int64(v), err
}

func (w *wire) stringField(field, typ int) (string, error) {
	if err := wantType(field, typ, wireBytes); err != nil {
		return "", err
	}
	b, err := w.bytes()
	return string(b), err
}

func (w *wire) bytesField(field, typ int) ([]byte, error) {
	if err := wantType(field, typ, wireBytes); err != nil {
		return nil, err
	}
	return w.bytes()
}

func (w *wire) float32Field(field, typ int) (float32, error) {
	if err := wantType(field, typ, wireFixed32); err != nil {
		return 0, err
	}
	v, err := w.fixed32()
	return math.Float32frombits(v), err
}

// appendVarints reads a repeated varint field, packed or not.
func (w *wire) appendVarints(dst []int64, field, typ int) ([]int64, error) {
	switch typ {
	case wireVarint:
		v, err := w.varint()
		return append(dst, int64(v)), err
	case wireBytes:
		b, err := w.bytes()
		if err != nil {
			return dst, err
		}
		if dst == nil {
			dst = make([]int64, 0, countVarints(b))
		}
		sub := wire{b: b}
		for !sub.done() {
			v, err := sub.varint()
			if err != nil {
				return dst, err
			}
			dst = append(dst, int64(v))
		}
		return dst, nil
	}
	return dst, fmt.Errorf("field %d: wire type %d is not valid for a repeated varint", field, typ)
}

func countVarints(b []byte) int {
	n := 0
	for _, c := range b {
		if c < 0x80 {
			n++
		}
	}
	return n
}

// appendFloat32s reads a repeated float field, packed or not.
func (w *wire) appendFloat32s(dst []float32, field, typ int) ([]float32, error) {
	switch typ {
	case wireFixed32:
		v, err := w.fixed32()
		return append(dst, math.Float32frombits(v)), err
	case wireBytes:
		b, err := w.bytes()
		if err != nil {
			return dst, err
		}
		if len(b)%4 != 0 {
			return dst, fmt.Errorf("field %d: packed float length %d is not a multiple of 4", field, len(b))
		}
		if dst == nil {
			dst = make([]float32, 0, len(b)/4)
		}
		for i := 0; i < len(b); i += 4 {
			dst = append(dst, math.Float32frombits(binary.LittleEndian.Uint32(b[i:])))
		}
		return dst, nil
	}
	return dst, fmt.Errorf("field %d: wire type %d is not valid for a repeated float", field, typ)
}

// appendFloat64s reads a repeated double field, packed or not.
func (w *wire) appendFloat64s(dst []float64, field, typ int) ([]float64, error) {
	switch typ {
	case wireFixed64:
		v, err := w.fixed64()
		return append(dst, math.Float64frombits(v)), err
	case wireBytes:
		b, err := w.bytes()
		if err != nil {
			return dst, err
		}
		if len(b)%8 != 0 {
			return dst, fmt.Errorf("field %d: packed double length %d is not a multiple of 8", field, len(b))
		}
		if dst == nil {
			dst = make([]float64, 0, len(b)/8)
		}
		for i := 0; i < len(b); i += 8 {
			dst = append(dst, math.Float64frombits(binary.LittleEndian.Uint64(b[i:])))
		}
		return dst, nil
	}
	return dst, fmt.Errorf("field %d: wire type %d is not valid for a repeated double", field, typ)
}
