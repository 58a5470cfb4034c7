package onnx

import (
	"fmt"
)

// MatMul and Gemm.

// gemmF32 computes c[m,n] += a[m,k] * b[k,n] (row-major, contiguous) with an
// i-k-j loop order so the inner loop streams rows of b and c, four rows of b
// at a time to cut the loads and stores of c.
func gemmF32(m, n, k int, a, b, c []float32) {
	if n == 0 {
		return
	}
	for i := 0; i < m; i++ {
		ci := c[i*n : i*n+n]
		ai := a[i*k : i*k+k]
		p := 0
		for ; p+4 <= k; p += 4 {
			a0, a1, a2, a3 := ai[p], ai[p+1], ai[p+2], ai[p+3]
			if a0 == 0 && a1 == 0 && a2 == 0 && a3 == 0 {
				continue
			}
			b0 := b[p*n : p*n+n]
			b1 := b[(p+1)*n : (p+1)*n+n]
			b2 := b[(p+2)*n : (p+2)*n+n]
			b3 := b[(p+3)*n : (p+3)*n+n]
			b1, b2, b3 = b1[:len(ci)], b2[:len(ci)], b3[:len(ci)]
			b0 = b0[:len(ci)]
			for j := range ci {
				ci[j] += a0*b0[j] + a1*b1[j] + a2*b2[j] + a3*b3[j]
			}
		}
		for ; p < k; p++ {
			av := ai[p]
			if av == 0 {
				continue
			}
			bp := b[p*n : p*n+n]
			bp = bp[:len(ci)]
			for j := range ci {
				ci[j] += av * bp[j]
			}
		}
	}
}

func gemmT[T number](m, n, k int, a, b, c []T) {
	for i := 0; i < m; i++ {
		ci := c[i*n : i*n+n]
		ai := a[i*k : i*k+k]
		for p, av := range ai {
			bp := b[p*n : p*n+n]
			for j := range ci {
				ci[j] += av * bp[j]
			}
		}
	}
}

// matmul computes numpy-style matmul (batched, with 1-D promotion).
func matmul(rc *RunContext, a, b *Tensor) (*Tensor, error) {
	if a.DType != b.DType {
		return nil, fmt.Errorf("input types differ: %s and %s", a.DType, b.DType)
	}
	as, bs := a.Shape, b.Shape
	if len(as) == 0 || len(bs) == 0 {
		return nil, fmt.Errorf("MatMul inputs must not be scalars, got shapes %v and %v", as, bs)
	}
	// Promote 1-D operands.
	aVec, bVec := len(as) == 1, len(bs) == 1
	if aVec {
		as = []int{1, as[0]}
	}
	if bVec {
		bs = []int{bs[0], 1}
	}
	m, k := as[len(as)-2], as[len(as)-1]
	k2, n := bs[len(bs)-2], bs[len(bs)-1]
	if k != k2 {
		return nil, fmt.Errorf("MatMul shapes %v and %v do not match (inner dimensions %d and %d)", a.Shape, b.Shape, k, k2)
	}
	batch, err := broadcastShapes(as[:len(as)-2], bs[:len(bs)-2])
	if err != nil {
		return nil, err
	}
	full := append([]int{}, batch...)
	if !aVec {
		full = append(full, m)
	}
	if !bVec {
		full = append(full, n)
	}
	o := rc.Alloc(a.DType, full)
	nb := shapeSize(batch)
	ai := bcastIndex(batch, as[:len(as)-2])
	bi := bcastIndex(batch, bs[:len(bs)-2])
	mk, kn, mn := m*k, k*n, m*n
	switch od := o.Data.(type) {
	case []float32:
		ad, bd := a.Data.([]float32), b.Data.([]float32)
		for x := 0; x < nb; x++ {
			gemmF32(m, n, k, ad[ai[x]*mk:ai[x]*mk+mk], bd[bi[x]*kn:bi[x]*kn+kn], od[x*mn:x*mn+mn])
		}
		if a.DType == Float16 {
			roundAllF16(od)
		}
	case []float64:
		matmulBatch(nb, m, n, k, ai, bi, a.Data.([]float64), b.Data.([]float64), od)
	case []int32:
		matmulBatch(nb, m, n, k, ai, bi, a.Data.([]int32), b.Data.([]int32), od)
	case []int64:
		matmulBatch(nb, m, n, k, ai, bi, a.Data.([]int64), b.Data.([]int64), od)
	case []uint32:
		matmulBatch(nb, m, n, k, ai, bi, a.Data.([]uint32), b.Data.([]uint32), od)
	case []uint64:
		matmulBatch(nb, m, n, k, ai, bi, a.Data.([]uint64), b.Data.([]uint64), od)
	default:
		return nil, fmt.Errorf("MatMul on %s is not supported", a.DType)
	}
	return o, nil
}

func matmulBatch[T number](nb, m, n, k int, ai, bi []int, a, b, o []T) {
	mk, kn, mn := m*k, k*n, m*n
	for x := 0; x < nb; x++ {
		gemmT(m, n, k, a[ai[x]*mk:ai[x]*mk+mk], b[bi[x]*kn:bi[x]*kn+kn], o[x*mn:x*mn+mn])
	}
}

func buildMatMul(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(2, 2)
	b.CheckOutputs(1, 1)
	return func(rc *RunContext, in, out []*Tensor) error {
		o, err := matmul(rc, in[0], in[1])
		out[0] = o
		return err
	}, nil
}

// transpose2D returns the transpose of a [r,c] matrix into dst.
func transpose2D[T any](dst, src []T, r, c int) {
	for i := 0; i < r; i++ {
		for j := 0; j < c; j++ {
			dst[j*r+i] = src[i*c+j]
		}
	}
}

func buildGemm(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(2, 3)
	alpha := b.AttrFloat("alpha", 1)
	beta := b.AttrFloat("beta", 1)
	transA := b.AttrInt("transA", 0) != 0
	transB := b.AttrInt("transB", 0) != 0
	// A constant B is pre-transposed once at load time.
	var bT *Tensor
	if c := b.Const(1); c != nil && transB && len(c.Shape) == 2 {
		if d, ok := c.Data.([]float32); ok {
			bT = &Tensor{DType: c.DType, Shape: []int{c.Shape[1], c.Shape[0]}, Data: make([]float32, len(d))}
			transpose2D(bT.Data.([]float32), d, c.Shape[0], c.Shape[1])
		}
	}
	return func(rc *RunContext, in, out []*Tensor) error {
		A, B := in[0], in[1]
		var C *Tensor
		if len(in) > 2 {
			C = in[2]
		}
		if len(A.Shape) != 2 || len(B.Shape) != 2 {
			return fmt.Errorf("Gemm needs 2-D A and B, got shapes %v and %v", A.Shape, B.Shape)
		}
		if A.DType != B.DType {
			return fmt.Errorf("input types differ: %s and %s", A.DType, B.DType)
		}
		m, k := A.Shape[0], A.Shape[1]
		if transA {
			m, k = k, m
		}
		tb := transB
		if bT != nil && B == b.consts[1] {
			B, tb = bT, false
		}
		k2, n := B.Shape[0], B.Shape[1]
		if tb {
			k2, n = n, k2
		}
		if k != k2 {
			return fmt.Errorf("Gemm shapes %v and %v do not match", A.Shape, B.Shape)
		}
		o := rc.Alloc(A.DType, []int{m, n})
		switch od := o.Data.(type) {
		case []float32:
			ad, bd := A.Data.([]float32), B.Data.([]float32)
			if transA {
				t := make([]float32, len(ad))
				transpose2D(t, ad, k, m)
				ad = t
			}
			if tb {
				t := make([]float32, len(bd))
				transpose2D(t, bd, n, k)
				bd = t
			}
			gemmF32(m, n, k, ad, bd, od)
			if alpha != 1 {
				for i := range od {
					od[i] *= alpha
				}
			}
			if C != nil && beta != 0 {
				cd, ok := C.Data.([]float32)
				if !ok {
					return fmt.Errorf("C has type %s, want %s", C.DType, A.DType)
				}
				if err := checkBiasShape(o.Shape, C.Shape); err != nil {
					return err
				}
				bcastRows(o.Shape, o.Shape, C.Shape, func(oo, ao, bo, n, as, bs int) {
					for i := 0; i < n; i++ {
						od[oo+i] += beta * cd[bo+i*bs]
					}
				})
			}
		case []float64:
			ad, bd := A.Data.([]float64), B.Data.([]float64)
			if transA {
				t := make([]float64, len(ad))
				transpose2D(t, ad, k, m)
				ad = t
			}
			if tb {
				t := make([]float64, len(bd))
				transpose2D(t, bd, n, k)
				bd = t
			}
			gemmT(m, n, k, ad, bd, od)
			for i := range od {
				od[i] *= float64(alpha)
			}
			if C != nil && beta != 0 {
				cd, ok := C.Data.([]float64)
				if !ok {
					return fmt.Errorf("C has type %s, want %s", C.DType, A.DType)
				}
				if err := checkBiasShape(o.Shape, C.Shape); err != nil {
					return err
				}
				bcastRows(o.Shape, o.Shape, C.Shape, func(oo, ao, bo, n, as, bs int) {
					for i := 0; i < n; i++ {
						od[oo+i] += float64(beta) * cd[bo+i*bs]
					}
				})
			}
		default:
			return fmt.Errorf("Gemm on %s is not supported", A.DType)
		}
		out[0] = o
		return nil
	}, nil
}

// checkBiasShape checks that Gemm's C broadcasts to the [M, N] output.
func checkBiasShape(out, c []int) error {
	if len(c) > 2 {
		return fmt.Errorf("C shape %v has rank > 2", c)
	}
	off := 2 - len(c)
	for i, d := range c {
		if d != 1 && d != out[off+i] {
			return fmt.Errorf("C shape %v does not broadcast to the output shape %v", c, out)
		}
	}
	return nil
}

func init() {
	Register(
		OpDef{Name: "MatMul", Since: 1, Build: buildMatMul},
		OpDef{Name: "Gemm", Since: 7, Build: buildGemm},
	)
}
