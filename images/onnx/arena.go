package onnx

import (
	"context"
	"fmt"
)

// arena recycles tensor buffers between and within runs. One arena belongs to
// one run at a time (sessions keep them in a sync.Pool).
type arena struct {
	free    map[uint64][]any // by bufKey
	headers []*Tensor
}

// bufKey is the free-list key of a buffer: its storage type (Float16 and
// BFloat16 share Float's) and length, packed into an integer so that map
// lookups take the fast path.
func bufKey(dt DType, n int) uint64 { return uint64(n)<<32 | uint64(uint32(storageType(dt))) }

func storageType(dt DType) DType {
	if dt == Float16 || dt == BFloat16 {
		return Float
	}
	return dt
}

func newArena() *arena { return &arena{free: map[uint64][]any{}} }

// MaxTensorElements bounds the size of any tensor a kernel allocates, so that
// hostile shapes (a Range, Expand or ConstantOfShape fed from input data)
// fail the run instead of exhausting memory.
const MaxTensorElements = 1 << 28

// allocLimitError is panicked by alloc and turned into an error by the run.
type allocLimitError struct {
	shape []int
}

func (e allocLimitError) Error() string {
	return fmt.Sprintf("tensor of shape %v exceeds the limit of %d elements", e.shape, MaxTensorElements)
}

// checkAlloc returns the element count of shape, panicking with
// allocLimitError if it is negative or too large.
func checkAlloc(shape []int) int {
	n := 1
	for _, d := range shape {
		if d < 0 {
			panic(allocLimitError{append([]int(nil), shape...)})
		}
		if d == 0 {
			return 0
		}
		if n > MaxTensorElements/d {
			panic(allocLimitError{append([]int(nil), shape...)})
		}
		n *= d
	}
	return n
}

// alloc returns a tensor with zeroed data owned by a.
func (a *arena) alloc(dt DType, shape []int) *Tensor {
	n := checkAlloc(shape)
	var t *Tensor
	if k := len(a.headers); k > 0 {
		t = a.headers[k-1]
		a.headers = a.headers[:k-1]
		*t = Tensor{Shape: t.Shape[:0]}
	} else {
		t = &Tensor{}
	}
	t.DType = dt
	t.Shape = append(t.Shape, shape...)
	key := bufKey(dt, n)
	if l := a.free[key]; len(l) > 0 {
		d := l[len(l)-1]
		l[len(l)-1] = nil
		a.free[key] = l[:len(l)-1]
		clearData(d)
		t.Data = d
	} else {
		t.Data = makeData(dt, n)
	}
	t.arena = a
	return t
}

// release gives t's buffer (and header) back if a owns it.
func (a *arena) release(t *Tensor) {
	if t == nil || t.arena != a || t.Data == nil {
		return
	}
	key := bufKey(t.DType, dataLen(t.Data))
	a.free[key] = append(a.free[key], t.Data)
	t.arena = nil
	t.Data = nil
	a.headers = append(a.headers, t)
}

func clearData(d any) {
	switch v := d.(type) {
	case []float32:
		clear(v)
	case []float64:
		clear(v)
	case []int8:
		clear(v)
	case []int16:
		clear(v)
	case []int32:
		clear(v)
	case []int64:
		clear(v)
	case []uint8:
		clear(v)
	case []uint16:
		clear(v)
	case []uint32:
		clear(v)
	case []uint64:
		clear(v)
	case []bool:
		clear(v)
	case []string:
		clear(v)
	}
}

// RunContext is what a kernel gets besides its inputs: the run's context and
// an allocator whose buffers are recycled across runs.
type RunContext struct {
	ctx context.Context
	ar  *arena
}

// Context is the context of the Run call.
func (rc *RunContext) Context() context.Context {
	if rc.ctx == nil {
		return context.Background()
	}
	return rc.ctx
}

// Alloc returns a zeroed tensor of the given type and shape (the shape is copied).
func (rc *RunContext) Alloc(dt DType, shape []int) *Tensor {
	if rc.ar == nil {
		checkAlloc(shape)
		return NewTensor(dt, shape...)
	}
	return rc.ar.alloc(dt, shape)
}

// Release gives back a tensor from Alloc that the kernel used as scratch and
// does not return. Releasing anything else is a no-op.
func (rc *RunContext) Release(t *Tensor) {
	if rc.ar != nil {
		rc.ar.release(t)
	}
}

// AllocLike allocates a zeroed tensor with t's type and shape.
func (rc *RunContext) AllocLike(t *Tensor) *Tensor { return rc.Alloc(t.DType, t.Shape) }

// Copy returns a fresh tensor with t's type, shape and data.
func (rc *RunContext) Copy(t *Tensor, shape []int) *Tensor {
	if t.Kind != KindTensor {
		return t.Clone()
	}
	if shape == nil {
		shape = t.Shape
	}
	o := rc.Alloc(t.DType, shape)
	copyData(o.Data, t.Data)
	return o
}
