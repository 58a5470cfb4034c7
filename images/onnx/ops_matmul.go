package onnx

import (
	"fmt"
)

// MatMul and Gemm.

// gemmF32 computes c[m,n] += a[m,k] * b[k,n] (row-major, contiguous). A b
// of one or two columns (regression heads, binary scores) goes to
// gemmSmallF32, which keeps its sums in registers; anything wider to
// gemmStreamF32, which streams rows of b and c (BenchmarkGemm compares them).
func gemmF32(m, n, k int, a, b, c []float32) {
	if n == 0 {
		return
	}
	if n < 3 {
		gemmSmallF32(m, n, k, a, b, c)
		return
	}
	gemmStreamF32(m, n, k, a, b, c)
}

// gemmStreamF32 is gemmF32's kernel for b of 8 or more columns: rows of a
// go in pairs, so each value of b loaded serves two rows, and the k
// dimension four at a time (a group whose values of a are all zero is
// skipped: activations after a Relu are often zero).
func gemmStreamF32(m, n, k int, a, b, c []float32) {
	i := 0
	for ; i+2 <= m; i += 2 {
		c0 := c[i*n : i*n+n]
		c1 := c[(i+1)*n : (i+1)*n+n]
		c1 = c1[:len(c0)]
		x := a[i*k : i*k+k]
		y := a[(i+1)*k : (i+1)*k+k]
		y = y[:len(x)]
		p := 0
		for ; p+4 <= k; p += 4 {
			x0, x1, x2, x3 := x[p], x[p+1], x[p+2], x[p+3]
			y0, y1, y2, y3 := y[p], y[p+1], y[p+2], y[p+3]
			if x0 == 0 && x1 == 0 && x2 == 0 && x3 == 0 && y0 == 0 && y1 == 0 && y2 == 0 && y3 == 0 {
				continue
			}
			b0 := b[p*n : p*n+n]
			b1 := b[(p+1)*n : (p+1)*n+n]
			b2 := b[(p+2)*n : (p+2)*n+n]
			b3 := b[(p+3)*n : (p+3)*n+n]
			b1, b2, b3 = b1[:len(c0)], b2[:len(c0)], b3[:len(c0)]
			b0 = b0[:len(c0)]
			for j := range c0 {
				v0, v1, v2, v3 := b0[j], b1[j], b2[j], b3[j]
				c0[j] += x0*v0 + x1*v1 + x2*v2 + x3*v3
				c1[j] += y0*v0 + y1*v1 + y2*v2 + y3*v3
			}
		}
		for ; p < k; p++ {
			xv, yv := x[p], y[p]
			if xv == 0 && yv == 0 {
				continue
			}
			bp := b[p*n : p*n+n]
			bp = bp[:len(c0)]
			for j := range c0 {
				c0[j] += xv * bp[j]
				c1[j] += yv * bp[j]
			}
		}
	}
	if i == m {
		return
	}
	// The last, unpaired row.
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

// gemmSmallF32 computes c[m,n] += a[m,k] * b[k,n] with a register-blocked
// kernel: two rows of a by four columns of b accumulate in eight registers
// over the whole of k, so c is loaded and stored once per element and each
// loaded value of b serves two rows. Every output element is the plain
// sequential sum over p of a[i,p]*b[p,j], added to c at the end.
func gemmSmallF32(m, n, k int, a, b, c []float32) {
	i := 0
	for ; i+2 <= m; i += 2 {
		a0 := a[i*k : i*k+k]
		a1 := a[(i+1)*k : (i+1)*k+k]
		a1 = a1[:len(a0)]
		c0 := c[i*n : i*n+n]
		c1 := c[(i+1)*n : (i+1)*n+n]
		c1 = c1[:len(c0)]
		j := 0
		for ; j+4 <= n; j += 4 {
			var s00, s01, s02, s03, s10, s11, s12, s13 float32
			for p, x0 := range a0 {
				x1 := a1[p]
				bp := b[p*n+j : p*n+j+4]
				b0, b1, b2, b3 := bp[0], bp[1], bp[2], bp[3]
				s00 += x0 * b0
				s01 += x0 * b1
				s02 += x0 * b2
				s03 += x0 * b3
				s10 += x1 * b0
				s11 += x1 * b1
				s12 += x1 * b2
				s13 += x1 * b3
			}
			cc := c0[j : j+4]
			cc[0] += s00
			cc[1] += s01
			cc[2] += s02
			cc[3] += s03
			cc = c1[j : j+4]
			cc[0] += s10
			cc[1] += s11
			cc[2] += s12
			cc[3] += s13
		}
		for ; j < n; j++ {
			var s0, s1 float32
			for p, x0 := range a0 {
				bv := b[p*n+j]
				s0 += x0 * bv
				s1 += a1[p] * bv
			}
			c0[j] += s0
			c1[j] += s1
		}
	}
	if i < m {
		a0 := a[i*k : i*k+k]
		c0 := c[i*n : i*n+n]
		j := 0
		for ; j+4 <= n; j += 4 {
			var s0, s1, s2, s3 float32
			for p, x0 := range a0 {
				bp := b[p*n+j : p*n+j+4]
				s0 += x0 * bp[0]
				s1 += x0 * bp[1]
				s2 += x0 * bp[2]
				s3 += x0 * bp[3]
			}
			cc := c0[j : j+4]
			cc[0] += s0
			cc[1] += s1
			cc[2] += s2
			cc[3] += s3
		}
		for ; j < n; j++ {
			var s0 float32
			for p, x0 := range a0 {
				s0 += x0 * b[p*n+j]
			}
			c0[j] += s0
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
				if len(cd) == n && n > 0 && (len(C.Shape) == 1 || C.Shape[0] == 1) {
					// A bias row, the common case: no per-row callback.
					for r := 0; r < len(od); r += n {
						row := od[r : r+n]
						for j, v := range cd[:len(row)] {
							row[j] += beta * v
						}
					}
				} else {
					bcastRows(o.Shape, o.Shape, C.Shape, func(oo, ao, bo, n, as, bs int) {
						for i := 0; i < n; i++ {
							od[oo+i] += beta * cd[bo+i*bs]
						}
					})
				}
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
