package onnx

import (
	"fmt"
	"math"
	"strings"
)

// DType is an ONNX element type; the values are TensorProto.DataType's.
type DType int32

// The element types.
const (
	Undefined  DType = 0
	Float      DType = 1
	Uint8      DType = 2
	Int8       DType = 3
	Uint16     DType = 4
	Int16      DType = 5
	Int32      DType = 6
	Int64      DType = 7
	String     DType = 8
	Bool       DType = 9
	Float16    DType = 10
	Double     DType = 11
	Uint32     DType = 12
	Uint64     DType = 13
	Complex64  DType = 14
	Complex128 DType = 15
	BFloat16   DType = 16
)

var dtypeNames = map[DType]string{
	Undefined: "undefined", Float: "float32", Uint8: "uint8", Int8: "int8", Uint16: "uint16",
	Int16: "int16", Int32: "int32", Int64: "int64", String: "string", Bool: "bool",
	Float16: "float16", Double: "float64", Uint32: "uint32", Uint64: "uint64",
	Complex64: "complex64", Complex128: "complex128", BFloat16: "bfloat16",
}

func (d DType) String() string {
	if s, ok := dtypeNames[d]; ok {
		return s
	}
	return fmt.Sprintf("dtype(%d)", int32(d))
}

// Supported reports whether tensors of this type can be held and computed on.
func (d DType) Supported() bool {
	switch d {
	case Float, Uint8, Int8, Uint16, Int16, Int32, Int64, String, Bool, Float16, Double, Uint32, Uint64, BFloat16:
		return true
	}
	return false
}

// IsFloat reports whether d is a floating-point type.
func (d DType) IsFloat() bool { return d == Float || d == Double || d == Float16 || d == BFloat16 }

// IsInt reports whether d is an integer type.
func (d DType) IsInt() bool {
	switch d {
	case Uint8, Int8, Uint16, Int16, Int32, Int64, Uint32, Uint64:
		return true
	}
	return false
}

// IsSigned reports whether d is a signed integer or floating-point type.
func (d DType) IsSigned() bool {
	switch d {
	case Int8, Int16, Int32, Int64, Float, Double, Float16, BFloat16:
		return true
	}
	return false
}

// Kind says what a value is: a tensor (the usual case), a sequence or a map.
type Kind uint8

// The kinds of values.
const (
	KindTensor   Kind = iota
	KindSequence      // Seq holds the elements
	KindMap           // Keys and Values hold the entries, as 1-D tensors of equal length
)

// Tensor is a value flowing through a graph. For KindTensor, Data holds the
// elements in row-major order as a Go slice whose type follows DType:
//
//	Float, Float16, BFloat16 -> []float32   Double -> []float64
//	Int8 -> []int8   Int16 -> []int16   Int32 -> []int32   Int64 -> []int64
//	Uint8 -> []uint8 Uint16 -> []uint16 Uint32 -> []uint32 Uint64 -> []uint64
//	Bool -> []bool   String -> []string
//
// A scalar has an empty Shape and one element.
// Sequences (KindSequence) keep their elements in Seq; maps (KindMap) keep
// their keys and values as two 1-D tensors of the same length in Keys and
// Values. ZipMap's output, a sequence of maps, is a KindSequence whose
// elements are KindMap values.
type Tensor struct {
	Kind  Kind
	DType DType
	Shape []int
	Data  any

	Seq    []*Tensor
	Keys   *Tensor
	Values *Tensor

	arena *arena // the arena whose buffer Data is, while in a run
}

// NewTensor allocates a zeroed tensor.
func NewTensor(dt DType, shape ...int) *Tensor {
	n := shapeSize(shape)
	return &Tensor{DType: dt, Shape: append([]int(nil), shape...), Data: makeData(dt, n)}
}

// FromFloat32 wraps data (not copied) as a float32 tensor of the given shape.
func FromFloat32(data []float32, shape ...int) *Tensor {
	return &Tensor{DType: Float, Shape: append([]int{}, shape...), Data: data}
}

// FromFloat64 wraps data (not copied) as a float64 tensor.
func FromFloat64(data []float64, shape ...int) *Tensor {
	return &Tensor{DType: Double, Shape: append([]int{}, shape...), Data: data}
}

// FromInt64 wraps data (not copied) as an int64 tensor.
func FromInt64(data []int64, shape ...int) *Tensor {
	return &Tensor{DType: Int64, Shape: append([]int{}, shape...), Data: data}
}

// FromInt32 wraps data (not copied) as an int32 tensor.
func FromInt32(data []int32, shape ...int) *Tensor {
	return &Tensor{DType: Int32, Shape: append([]int{}, shape...), Data: data}
}

// FromStrings wraps data (not copied) as a string tensor.
func FromStrings(data []string, shape ...int) *Tensor {
	return &Tensor{DType: String, Shape: append([]int{}, shape...), Data: data}
}

// FromBool wraps data (not copied) as a bool tensor.
func FromBool(data []bool, shape ...int) *Tensor {
	return &Tensor{DType: Bool, Shape: append([]int{}, shape...), Data: data}
}

// NewSequence makes a sequence value.
func NewSequence(elems ...*Tensor) *Tensor { return &Tensor{Kind: KindSequence, Seq: elems} }

// NewMap makes a map value from 1-D key and value tensors of equal length.
func NewMap(keys, values *Tensor) *Tensor {
	return &Tensor{Kind: KindMap, Keys: keys, Values: values}
}

// Len is the number of elements.
func (t *Tensor) Len() int { return dataLen(t.Data) }

// Rank is len(Shape).
func (t *Tensor) Rank() int { return len(t.Shape) }

// Float32s returns Data as []float32, or nil if it is not.
func (t *Tensor) Float32s() []float32 { v, _ := t.Data.([]float32); return v }

// Float64s returns Data as []float64, or nil.
func (t *Tensor) Float64s() []float64 { v, _ := t.Data.([]float64); return v }

// Int64s returns Data as []int64, or nil.
func (t *Tensor) Int64s() []int64 { v, _ := t.Data.([]int64); return v }

// Int32s returns Data as []int32, or nil.
func (t *Tensor) Int32s() []int32 { v, _ := t.Data.([]int32); return v }

// Strings returns Data as []string, or nil.
func (t *Tensor) Strings() []string { v, _ := t.Data.([]string); return v }

// Bools returns Data as []bool, or nil.
func (t *Tensor) Bools() []bool { v, _ := t.Data.([]bool); return v }

// Clone returns a deep copy not tied to any run.
func (t *Tensor) Clone() *Tensor {
	if t == nil {
		return nil
	}
	c := &Tensor{Kind: t.Kind, DType: t.DType, Shape: append([]int{}, t.Shape...)}
	if t.Data != nil {
		c.Data = makeData(t.DType, t.Len())
		copyData(c.Data, t.Data)
	}
	for _, e := range t.Seq {
		c.Seq = append(c.Seq, e.Clone())
	}
	c.Keys = t.Keys.Clone()
	c.Values = t.Values.Clone()
	return c
}

func (t *Tensor) String() string {
	if t == nil {
		return "<nil>"
	}
	switch t.Kind {
	case KindSequence:
		return fmt.Sprintf("sequence(%d)", len(t.Seq))
	case KindMap:
		return fmt.Sprintf("map(%v->%v)", t.Keys, t.Values)
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s%v", t.DType, t.Shape)
	if t.Len() <= 16 {
		fmt.Fprintf(&sb, "%v", t.Data)
	}
	return sb.String()
}

// AsInt64s returns the elements of an integer tensor widened to int64, for
// small shape-like inputs (axes, shapes, pads, indices). It allocates.
func (t *Tensor) AsInt64s() ([]int64, error) {
	out := make([]int64, t.Len())
	switch d := t.Data.(type) {
	case []int64:
		copy(out, d)
	case []int32:
		for i, v := range d {
			out[i] = int64(v)
		}
	case []int16:
		for i, v := range d {
			out[i] = int64(v)
		}
	case []int8:
		for i, v := range d {
			out[i] = int64(v)
		}
	case []uint8:
		for i, v := range d {
			out[i] = int64(v)
		}
	case []uint16:
		for i, v := range d {
			out[i] = int64(v)
		}
	case []uint32:
		for i, v := range d {
			out[i] = int64(v)
		}
	case []uint64:
		for i, v := range d {
			out[i] = int64(v)
		}
	default:
		return nil, fmt.Errorf("expected an integer tensor, got %s", t.DType)
	}
	return out, nil
}

// AsFloat64s returns the elements of a numeric tensor converted to float64. It allocates.
func (t *Tensor) AsFloat64s() ([]float64, error) {
	out := make([]float64, t.Len())
	switch d := t.Data.(type) {
	case []float32:
		for i, v := range d {
			out[i] = float64(v)
		}
	case []float64:
		copy(out, d)
	case []bool:
		for i, v := range d {
			if v {
				out[i] = 1
			}
		}
	default:
		ints, err := t.AsInt64s()
		if err != nil {
			return nil, fmt.Errorf("expected a numeric tensor, got %s", t.DType)
		}
		for i, v := range ints {
			out[i] = float64(v)
		}
	}
	return out, nil
}

func shapeSize(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// checkedSize multiplies dims, failing on negatives or overflow past limit.
func checkedSize(shape []int64, limit int64) (int, error) {
	n := int64(1)
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("negative dimension %d", d)
		}
		if d > limit {
			return 0, fmt.Errorf("dimension %d is larger than %d", d, limit)
		}
		if d == 0 {
			n = 0
			continue
		}
		if n > 0 && d > limit/n {
			return 0, fmt.Errorf("shape %v has more than %d elements", shape, limit)
		}
		if n > 0 {
			n *= d
		}
	}
	// re-check a zero dim doesn't hide an overflow earlier: fine, zero is zero
	if n > limit {
		return 0, fmt.Errorf("shape %v has more than %d elements", shape, limit)
	}
	return int(n), nil
}

func makeData(dt DType, n int) any {
	switch dt {
	case Float, Float16, BFloat16:
		return make([]float32, n)
	case Double:
		return make([]float64, n)
	case Int8:
		return make([]int8, n)
	case Int16:
		return make([]int16, n)
	case Int32:
		return make([]int32, n)
	case Int64:
		return make([]int64, n)
	case Uint8:
		return make([]uint8, n)
	case Uint16:
		return make([]uint16, n)
	case Uint32:
		return make([]uint32, n)
	case Uint64:
		return make([]uint64, n)
	case Bool:
		return make([]bool, n)
	case String:
		return make([]string, n)
	}
	return nil
}

func dataLen(d any) int {
	switch v := d.(type) {
	case []float32:
		return len(v)
	case []float64:
		return len(v)
	case []int8:
		return len(v)
	case []int16:
		return len(v)
	case []int32:
		return len(v)
	case []int64:
		return len(v)
	case []uint8:
		return len(v)
	case []uint16:
		return len(v)
	case []uint32:
		return len(v)
	case []uint64:
		return len(v)
	case []bool:
		return len(v)
	case []string:
		return len(v)
	}
	return 0
}

// copyData copies src into dst (same slice type).
func copyData(dst, src any) {
	switch d := dst.(type) {
	case []float32:
		copy(d, src.([]float32))
	case []float64:
		copy(d, src.([]float64))
	case []int8:
		copy(d, src.([]int8))
	case []int16:
		copy(d, src.([]int16))
	case []int32:
		copy(d, src.([]int32))
	case []int64:
		copy(d, src.([]int64))
	case []uint8:
		copy(d, src.([]uint8))
	case []uint16:
		copy(d, src.([]uint16))
	case []uint32:
		copy(d, src.([]uint32))
	case []uint64:
		copy(d, src.([]uint64))
	case []bool:
		copy(d, src.([]bool))
	case []string:
		copy(d, src.([]string))
	}
}

// gatherData sets dst[i] = src[idx[i]] for all i (same slice type).
func gatherData(dst, src any, idx []int) {
	switch d := dst.(type) {
	case []float32:
		gatherT(d, src.([]float32), idx)
	case []float64:
		gatherT(d, src.([]float64), idx)
	case []int8:
		gatherT(d, src.([]int8), idx)
	case []int16:
		gatherT(d, src.([]int16), idx)
	case []int32:
		gatherT(d, src.([]int32), idx)
	case []int64:
		gatherT(d, src.([]int64), idx)
	case []uint8:
		gatherT(d, src.([]uint8), idx)
	case []uint16:
		gatherT(d, src.([]uint16), idx)
	case []uint32:
		gatherT(d, src.([]uint32), idx)
	case []uint64:
		gatherT(d, src.([]uint64), idx)
	case []bool:
		gatherT(d, src.([]bool), idx)
	case []string:
		gatherT(d, src.([]string), idx)
	}
}

func gatherT[T any](dst, src []T, idx []int) {
	for i, j := range idx {
		dst[i] = src[j]
	}
}

// copyRange copies src[so:so+n] to dst[do:do+n] (same slice type).
func copyRange(dst any, do int, src any, so, n int) {
	switch d := dst.(type) {
	case []float32:
		copy(d[do:do+n], src.([]float32)[so:so+n])
	case []float64:
		copy(d[do:do+n], src.([]float64)[so:so+n])
	case []int8:
		copy(d[do:do+n], src.([]int8)[so:so+n])
	case []int16:
		copy(d[do:do+n], src.([]int16)[so:so+n])
	case []int32:
		copy(d[do:do+n], src.([]int32)[so:so+n])
	case []int64:
		copy(d[do:do+n], src.([]int64)[so:so+n])
	case []uint8:
		copy(d[do:do+n], src.([]uint8)[so:so+n])
	case []uint16:
		copy(d[do:do+n], src.([]uint16)[so:so+n])
	case []uint32:
		copy(d[do:do+n], src.([]uint32)[so:so+n])
	case []uint64:
		copy(d[do:do+n], src.([]uint64)[so:so+n])
	case []bool:
		copy(d[do:do+n], src.([]bool)[so:so+n])
	case []string:
		copy(d[do:do+n], src.([]string)[so:so+n])
	}
}

// float16 and bfloat16 conversions.

func f16ToF32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch {
	case exp == 0 && mant == 0:
		return math.Float32frombits(sign)
	case exp == 0: // subnormal
		f := float32(mant) / 1024 / 16384
		if sign != 0 {
			return -f
		}
		return f
	case exp == 31:
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	}
	return math.Float32frombits(sign | (exp+112)<<23 | mant<<13)
}

func f32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23&0xff) - 127 + 15
	mant := b & 0x7fffff
	switch {
	case b&0x7fffffff > 0x7f800000: // NaN
		return sign | 0x7e00
	case exp >= 31:
		return sign | 0x7c00
	case exp <= 0:
		if exp < -10 {
			return sign
		}
		mant |= 0x800000
		shift := uint32(14 - exp)
		h := uint16(mant >> shift)
		if (mant>>(shift-1))&1 != 0 && (mant&((1<<(shift-1))-1) != 0 || h&1 != 0) {
			h++
		}
		return sign | h
	}
	h := sign | uint16(exp)<<10 | uint16(mant>>13)
	if mant&0x1000 != 0 && (mant&0xfff != 0 || h&1 != 0) {
		h++
	}
	return h
}

// roundF16 rounds a float32 to the nearest float16 value.
func roundF16(f float32) float32 { return f16ToF32(f32ToF16(f)) }

func bf16ToF32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

func roundBF16(f float32) float32 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		return f
	}
	b += 0x7fff + (b>>16)&1
	return math.Float32frombits(b &^ 0xffff)
}
