package onnx

import "fmt"

// broadcastShapes returns the numpy-style broadcast of the shapes.
func broadcastShapes(shapes ...[]int) ([]int, error) {
	r := 0
	for _, s := range shapes {
		r = max(r, len(s))
	}
	out := make([]int, r)
	for i := range out {
		out[i] = 1
	}
	for _, s := range shapes {
		off := r - len(s)
		for i, d := range s {
			o := out[off+i]
			switch {
			case o == d || d == 1:
			case o == 1:
				out[off+i] = d
			default:
				return nil, fmt.Errorf("shapes %v cannot be broadcast together", shapes)
			}
		}
	}
	return out, nil
}

// bcastStrides returns, for an input shape broadcast to out, the element
// stride of each output dimension (0 where the input is broadcast).
func bcastStrides(out, in []int) []int {
	st := make([]int, len(out))
	off := len(out) - len(in)
	s := 1
	for i := len(in) - 1; i >= 0; i-- {
		if in[i] != 1 {
			st[off+i] = s
		}
		s *= in[i]
	}
	return st
}

func sameShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// bcastRows walks the output of a broadcast binary op in runs along the last
// dimension, calling fn with the output offset, the input offsets, the run
// length and the input steps (0 or 1) of the run.
func bcastRows(oshape, ashape, bshape []int, fn func(o, a, b, n, as, bs int)) {
	n := shapeSize(oshape)
	if n == 0 {
		return
	}
	na, nb := shapeSize(ashape), shapeSize(bshape)
	switch {
	case na == n && nb == n && sameShape(ashape, bshape):
		fn(0, 0, 0, n, 1, 1)
		return
	case nb == 1 && na == n:
		fn(0, 0, 0, n, 1, 0)
		return
	case na == 1 && nb == n:
		fn(0, 0, 0, n, 0, 1)
		return
	}
	r := len(oshape)
	as, bs := bcastStrides(oshape, ashape), bcastStrides(oshape, bshape)
	// Merge trailing dimensions while both inputs are contiguous or both broadcast the same way.
	inner := oshape[r-1]
	aStep, bStep := as[r-1], bs[r-1]
	k := r - 1
	for k > 0 {
		d := oshape[k-1]
		ea, eb := as[k-1], bs[k-1]
		okA := (aStep == 0 && ea == 0) || (aStep == 1 && ea == inner)
		okB := (bStep == 0 && eb == 0) || (bStep == 1 && eb == inner)
		if !okA || !okB {
			break
		}
		inner *= d
		k--
	}
	if aStep > 1 || bStep > 1 {
		// Cannot happen for contiguous inputs (stride of the last dim is 0 or 1).
		panic("broadcast: unexpected step")
	}
	idx := make([]int, k)
	o, ao, bo := 0, 0, 0
	for {
		fn(o, ao, bo, inner, aStep, bStep)
		o += inner
		// advance the odometer over dims [0,k)
		j := k - 1
		for ; j >= 0; j-- {
			idx[j]++
			ao += as[j]
			bo += bs[j]
			if idx[j] < oshape[j] {
				break
			}
			ao -= as[j] * oshape[j]
			bo -= bs[j] * oshape[j]
			idx[j] = 0
		}
		if j < 0 {
			return
		}
	}
}

// bcastIndex returns, for each element of the output shape, the flat index
// of the element of an input of shape in that broadcasts to it.
func bcastIndex(out, in []int) []int {
	n := checkAlloc(out)
	idx := make([]int, n)
	if n == 0 {
		return idx
	}
	if sameShape(out, in) {
		for i := range idx {
			idx[i] = i
		}
		return idx
	}
	st := bcastStrides(out, in)
	r := len(out)
	ctr := make([]int, r)
	off := 0
	for i := 0; i < n; i++ {
		idx[i] = off
		for j := r - 1; j >= 0; j-- {
			ctr[j]++
			off += st[j]
			if ctr[j] < out[j] {
				break
			}
			off -= st[j] * out[j]
			ctr[j] = 0
		}
	}
	return idx
}
