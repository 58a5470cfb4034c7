package onnx

import (
	"fmt"
	"math"

	"github.com/mlfleet/mlfleet/shared/errclass"
)

// Plan-time fusion of a dense layer: MatMul(X, W) -> Add(bias) -> Relu
// (the Relu optional) runs as one kernel that computes a block of output
// rows of X*W and then, while they are in cache, adds the bias and clamps.
// The arithmetic is the unfused kernels' (same summation order), so the
// outputs are bit-for-bit equal; only the intermediate tensors and the
// passes over them go away.
//
// A chain is fused only when the bias is a constant (an initializer or a
// folded value) whose shape is all ones but for the last dimension, the
// intermediate values are read by nothing else (no other node, no
// subgraph, not a graph output), and the Add and Relu carry no legacy
// attributes. At run time, inputs outside the fast path (not float32, W not
// 2-D, X of rank 1, a bias of higher rank than the product) run the
// original kernels one after another.

// denseFusion is the plan of one fused chain.
type denseFusion struct {
	mm, add, relu *step // relu nil when absent
	bias          *Tensor
	biasPos       int       // the bias's input position on the Add
	biasRow       []float32 // the bias as float32 (fast path), nil if not float32
}

// fuseDense rewrites s.steps, merging fusable chains. consts maps value ids
// to constant tensors; keep marks graph outputs.
func (s *Session) fuseDense(consts map[int]*Tensor, keep []bool) {
	readers := make([]int, s.numVals)
	producer := make([]int, s.numVals)
	for i := range producer {
		producer[i] = -1
	}
	for si, st := range s.steps {
		for _, id := range st.in {
			if id >= 0 {
				readers[id]++
			}
		}
		for _, id := range st.out {
			if id >= 0 {
				producer[id] = si
			}
		}
	}
	// soleReader returns the step that alone reads value id, or -1.
	soleReader := func(id int, after int) int {
		if id < 0 || keep[id] || readers[id] != 1 {
			return -1
		}
		for si := after + 1; si < len(s.steps); si++ {
			for _, in := range s.steps[si].in {
				if in == id {
					return si
				}
			}
		}
		return -1
	}
	isOp := func(st *step, op string) bool {
		return st.node.OpType == op && normDomain(st.node.Domain) == "" && len(st.node.Attributes) == 0
	}
	removed := make([]bool, len(s.steps))
	for si := range s.steps {
		mm := &s.steps[si]
		if removed[si] || !isOp(mm, "MatMul") || len(mm.in) != 2 || len(mm.out) != 1 {
			continue
		}
		ai := soleReader(mm.out[0], si)
		if ai < 0 || removed[ai] || !isOp(&s.steps[ai], "Add") {
			continue
		}
		add := &s.steps[ai]
		if len(add.in) != 2 || len(add.out) != 1 || add.out[0] < 0 {
			continue
		}
		pos := 1
		if add.in[0] != mm.out[0] {
			pos = 0
		}
		if add.in[1-pos] != mm.out[0] || add.in[pos] == mm.out[0] {
			continue
		}
		bias := consts[add.in[pos]]
		if bias == nil || bias.Kind != KindTensor || !biasShapeOK(bias.Shape) {
			continue
		}
		f := &denseFusion{mm: cloneStep(mm), add: cloneStep(add), bias: bias, biasPos: pos}
		if d, ok := bias.Data.([]float32); ok && bias.DType == Float {
			f.biasRow = d
		}
		final := add.out[0]
		removed[ai] = true
		if ri := soleReader(add.out[0], ai); ri >= 0 && !removed[ri] && isOp(&s.steps[ri], "Relu") &&
			len(s.steps[ri].in) == 1 && len(s.steps[ri].out) == 1 && s.steps[ri].out[0] >= 0 {
			f.relu = cloneStep(&s.steps[ri])
			final = s.steps[ri].out[0]
			removed[ri] = true
		}
		mm.kernel = f.run
		mm.out = []int{final}
	}
	// Gemm -> Relu: the Relu clamps the Gemm's fresh output in place.
	for si := range s.steps {
		g := &s.steps[si]
		if removed[si] || g.node.OpType != "Gemm" || normDomain(g.node.Domain) != "" || len(g.out) != 1 {
			continue
		}
		ri := soleReader(g.out[0], si)
		if ri < 0 || removed[ri] || !isOp(&s.steps[ri], "Relu") || len(s.steps[ri].in) != 1 ||
			len(s.steps[ri].out) != 1 || s.steps[ri].out[0] < 0 {
			continue
		}
		f := &gemmReluFusion{gemm: cloneStep(g), relu: cloneStep(&s.steps[ri])}
		g.kernel = f.run
		g.out = []int{s.steps[ri].out[0]}
		removed[ri] = true
	}
	kept := s.steps[:0]
	for si, st := range s.steps {
		if !removed[si] {
			kept = append(kept, st)
		}
	}
	clear(s.steps[len(kept):])
	s.steps = kept
}

func cloneStep(st *step) *step { c := *st; return &c }

// biasShapeOK: every dimension but the last is 1 (a scalar is fine too).
func biasShapeOK(shape []int) bool {
	for i := 0; i+1 < len(shape); i++ {
		if shape[i] != 1 {
			return false
		}
	}
	return true
}

// run is the fused kernel: in = the MatMul's inputs.
func (f *denseFusion) run(rc *RunContext, in, out []*Tensor) error {
	x, w := in[0], in[1]
	xd, okX := x.Data.([]float32)
	wd, okW := w.Data.([]float32)
	if !okX || !okW || x.DType != Float || w.DType != Float || f.biasRow == nil ||
		len(w.Shape) != 2 || len(x.Shape) < 2 || len(f.bias.Shape) > len(x.Shape) {
		return f.slow(rc, in, out)
	}
	k, n := w.Shape[0], w.Shape[1]
	r := len(x.Shape)
	if x.Shape[r-1] != k {
		return fmt.Errorf("MatMul shapes %v and %v do not match (inner dimensions %d and %d)", x.Shape, w.Shape, x.Shape[r-1], k)
	}
	nb := len(f.biasRow)
	if nb != 1 && nb != n {
		return f.slow(rc, in, out) // reports the broadcast error with the Add's name
	}
	m := shapeSize(x.Shape[:r-1])
	var shapeBuf [8]int
	shape := append(append(shapeBuf[:0], x.Shape[:r-1]...), n)
	o := rc.Alloc(Float, shape)
	od := o.Data.([]float32)
	denseF32(m, n, k, xd, wd, f.biasRow, od, f.relu != nil)
	out[0] = o
	return nil
}

// denseF32 sets c[m,n] = a[m,k]*b[k,n] + bias (bias of n values, or one
// broadcast), clamped at 0 if relu; c must be zeroed. Rows go in blocks
// (of an even count, so gemmF32 pairs rows as it does for the unfused
// MatMul) small enough to stay in cache between the product and the bias
// pass.
func denseF32(m, n, k int, a, b, bias, c []float32, relu bool) {
	if n == 0 {
		return
	}
	block := max(2, (8<<10)/n) &^ 1
	for i0 := 0; i0 < m; i0 += block {
		i1 := min(i0+block, m)
		cb := c[i0*n : i1*n]
		gemmF32(i1-i0, n, k, a[i0*k:i1*k], b, cb)
		biasReluRows(cb, n, bias, relu)
	}
}

// biasReluRows applies biasRelu to each row of n values of c.
func biasReluRows(c []float32, n int, bias []float32, relu bool) {
	if len(bias) != n || !relu {
		for r := 0; r < len(c); r += n {
			biasRelu(c[r:r+n], bias, relu)
		}
		return
	}
	for r := 0; r < len(c); r += n {
		row := c[r : r+n]
		bias := bias[:len(row)]
		for j, v := range row {
			bits := math.Float32bits(v + bias[j])
			row[j] = math.Float32frombits(bits & reluMask32(bits))
		}
	}
}

// biasRelu adds the bias (n values or one) to row and, if relu, clamps it
// as reluF32 does.
func biasRelu(row, bias []float32, relu bool) {
	if len(bias) == 1 {
		bv := bias[0]
		for j, v := range row {
			row[j] = v + bv
		}
		if relu {
			reluF32(row, row)
		}
		return
	}
	bias = bias[:len(row)]
	if !relu {
		for j, v := range row {
			row[j] = v + bias[j]
		}
		return
	}
	for j, v := range row {
		b := math.Float32bits(v + bias[j])
		row[j] = math.Float32frombits(b & reluMask32(b))
	}
}

// slow runs the chain's original kernels one after another.
func (f *denseFusion) slow(rc *RunContext, in, out []*Tensor) error {
	var one [1]*Tensor
	var two [2]*Tensor
	if err := f.mm.kernel(rc, in, one[:]); err != nil {
		return err
	}
	mm := one[0]
	two[f.biasPos], two[1-f.biasPos] = f.bias, mm
	one[0] = nil
	err := f.add.kernel(rc, two[:], one[:])
	rc.Release(mm)
	if err != nil {
		return stepError(f.add, err)
	}
	if f.relu == nil {
		out[0] = one[0]
		return nil
	}
	z := one[0]
	one[0] = nil
	err = f.relu.kernel(rc, []*Tensor{z}, one[:])
	rc.Release(z)
	if err != nil {
		return stepError(f.relu, err)
	}
	out[0] = one[0]
	return nil
}

// stepError names the fused node that failed (the run names the MatMul).
func stepError(st *step, err error) error {
	if errclass.ClassOf(err) == errclass.Unknown {
		return errclass.Wrap(errclass.InvalidArgument, err, "node %q (%s)", st.name, st.node.OpType)
	}
	return fmt.Errorf("node %q (%s): %w", st.name, st.node.OpType, err)
}

// gemmReluFusion runs a Gemm and clamps its output in place, the Relu's
// arithmetic without its pass over a second buffer.
type gemmReluFusion struct{ gemm, relu *step }

func (f *gemmReluFusion) run(rc *RunContext, in, out []*Tensor) error {
	var one [1]*Tensor
	if err := f.gemm.kernel(rc, in, one[:]); err != nil {
		return err
	}
	o := one[0]
	fresh := o != nil && o.arena == rc.ar
	for _, x := range in {
		if x == o {
			fresh = false
		}
	}
	if d, ok := o.Data.([]float32); ok && fresh && o.DType == Float {
		reluF32(d, d)
		out[0] = o
		return nil
	}
	if d, ok := o.Data.([]float64); ok && fresh {
		reluF64(d, d)
		out[0] = o
		return nil
	}
	one[0] = nil
	err := f.relu.kernel(rc, []*Tensor{o}, one[:])
	rc.Release(o)
	if err != nil {
		return stepError(f.relu, err)
	}
	out[0] = one[0]
	return nil
}
