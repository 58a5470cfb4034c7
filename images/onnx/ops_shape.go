package onnx

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Shape manipulation, data movement, Constant and Cast.

func normAxis(axis int64, rank int) (int, error) {
	if axis < -int64(rank) || axis >= int64(rank) {
		return 0, fmt.Errorf("axis %d is out of range for rank %d", axis, rank)
	}
	a := int(axis)
	if a < 0 {
		a += rank
	}
	return a, nil
}

// toDim converts a dimension read from data (a shape, sizes or repeats
// input) to int, refusing negative values and values no tensor can have.
func toDim(v int64) (int, error) {
	if v < 0 || v > MaxTensorElements {
		return 0, fmt.Errorf("dimension %d is out of range [0, %d]", v, MaxTensorElements)
	}
	return int(v), nil
}

func stridesOf(shape []int) []int {
	st := make([]int, len(shape))
	s := 1
	for i := len(shape) - 1; i >= 0; i-- {
		st[i] = s
		s *= shape[i]
	}
	return st
}

// stridedIndex lists base + sum(coord[d]*strides[d]) over all coordinates of oshape.
func stridedIndex(oshape []int, base int, strides []int) []int {
	n := checkAlloc(oshape)
	idx := make([]int, n)
	if n == 0 {
		return idx
	}
	r := len(oshape)
	ctr := make([]int, r)
	off := base
	for i := 0; i < n; i++ {
		idx[i] = off
		for j := r - 1; j >= 0; j-- {
			ctr[j]++
			off += strides[j]
			if ctr[j] < oshape[j] {
				break
			}
			off -= strides[j] * oshape[j]
			ctr[j] = 0
		}
	}
	return idx
}

// stridedNew allocates a tensor of shape and fills it with
// src[base + sum(coord[d]*strides[d])], walking the last dimension in a tight loop.
func stridedNew(rc *RunContext, src *Tensor, shape []int, base int, strides []int) *Tensor {
	o := rc.Alloc(src.DType, shape)
	switch d := o.Data.(type) {
	case []float32:
		stridedCopy(d, src.Data.([]float32), shape, base, strides)
	case []float64:
		stridedCopy(d, src.Data.([]float64), shape, base, strides)
	case []int64:
		stridedCopy(d, src.Data.([]int64), shape, base, strides)
	case []int32:
		stridedCopy(d, src.Data.([]int32), shape, base, strides)
	default:
		gatherData(o.Data, src.Data, stridedIndex(shape, base, strides))
	}
	return o
}

func stridedCopy[T any](dst, src []T, shape []int, base int, strides []int) {
	n := len(dst)
	if n == 0 {
		return
	}
	r := len(shape)
	if r == 0 {
		dst[0] = src[base]
		return
	}
	inner, step := shape[r-1], strides[r-1]
	ctr := make([]int, r-1)
	off := base
	for o := 0; o < n; o += inner {
		row := dst[o : o+inner]
		if step == 1 {
			copy(row, src[off:off+inner])
		} else {
			p := off
			for i := range row {
				row[i] = src[p]
				p += step
			}
		}
		for j := r - 2; j >= 0; j-- {
			ctr[j]++
			off += strides[j]
			if ctr[j] < shape[j] {
				break
			}
			off -= strides[j] * shape[j]
			ctr[j] = 0
		}
	}
}

// gatherNew allocates a tensor of shape and fills it from src by index.
func gatherNew(rc *RunContext, src *Tensor, shape []int, idx []int) *Tensor {
	o := rc.Alloc(src.DType, shape)
	gatherData(o.Data, src.Data, idx)
	return o
}

// intsInput reads an optional integer input (axes, shape, pads...) as int64s.
func intsInput(in []*Tensor, i int) ([]int64, bool, error) {
	if i >= len(in) || in[i] == nil {
		return nil, false, nil
	}
	v, err := in[i].AsInt64s()
	return v, true, err
}

// intsSince reads a list of ints that moved from an attribute to input i at
// opset since: input i's values from that opset on, attr before it.
func intsSince(b *NodeBuilder, since int, attr []int64, in []*Tensor, i int) ([]int64, error) {
	if b.Opset < since {
		return attr, nil
	}
	v, _, err := intsInput(in, i)
	return v, err
}

func buildConstant(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(0, 0)
	var val *Tensor
	n := 0
	for _, a := range b.Node.Attributes {
		switch a.Name {
		case "value":
			val = b.AttrTensor("value")
		case "value_float":
			val = &Tensor{DType: Float, Shape: []int{}, Data: []float32{b.AttrFloat("value_float", 0)}}
		case "value_floats":
			v := b.AttrFloats("value_floats", nil)
			val = &Tensor{DType: Float, Shape: []int{len(v)}, Data: append([]float32{}, v...)}
		case "value_int":
			val = &Tensor{DType: Int64, Shape: []int{}, Data: []int64{b.AttrInt("value_int", 0)}}
		case "value_ints":
			v := b.AttrInts("value_ints", nil)
			val = &Tensor{DType: Int64, Shape: []int{len(v)}, Data: append([]int64{}, v...)}
		case "value_string":
			val = &Tensor{DType: String, Shape: []int{}, Data: []string{b.AttrString("value_string", "")}}
		case "value_strings":
			v := b.AttrStrings("value_strings", nil)
			val = &Tensor{DType: String, Shape: []int{len(v)}, Data: v}
		case "sparse_value":
			return nil, Unsupported("sparse_value")
		default:
			continue
		}
		n++
	}
	if n != 1 || val == nil {
		return nil, fmt.Errorf("Constant needs exactly one value attribute, has %d", n)
	}
	return func(rc *RunContext, in, out []*Tensor) error {
		out[0] = rc.Copy(val, nil)
		return nil
	}, nil
}

// castTo converts x to dtype dt into a new tensor.
func castTo(rc *RunContext, x *Tensor, dt DType) (*Tensor, error) {
	o := rc.Alloc(dt, x.Shape)
	if x.DType == dt {
		copyData(o.Data, x.Data)
		return o, nil
	}
	switch od := o.Data.(type) {
	case []string:
		switch d := x.Data.(type) {
		case []float32:
			for i, v := range d {
				od[i] = formatFloat(float64(v), 32)
			}
		case []float64:
			for i, v := range d {
				od[i] = formatFloat(v, 64)
			}
		case []bool:
			for i, v := range d {
				if v {
					od[i] = "1"
				} else {
					od[i] = "0"
				}
			}
		case []uint64:
			for i, v := range d {
				od[i] = strconv.FormatUint(v, 10)
			}
		default:
			v, err := x.AsInt64s()
			if err != nil {
				return nil, err
			}
			for i, e := range v {
				od[i] = strconv.FormatInt(e, 10)
			}
		}
		return o, nil
	case []bool:
		f, err := numbersOf(x)
		if err != nil {
			return nil, err
		}
		for i, v := range f {
			od[i] = v != 0
		}
		return o, nil
	case []float32:
		f, err := numbersOf(x)
		if err != nil {
			return nil, err
		}
		for i, v := range f {
			od[i] = float32(v)
		}
		switch dt {
		case Float16:
			roundAllF16(od)
		case BFloat16:
			for i, v := range od {
				od[i] = roundBF16(v)
			}
		}
		return o, nil
	case []float64:
		f, err := numbersOf(x)
		if err != nil {
			return nil, err
		}
		copy(od, f)
		return o, nil
	}
	// integer targets
	if x.DType.IsInt() {
		if u, ok := x.Data.([]uint64); ok {
			v := make([]int64, len(u))
			for i, e := range u {
				v[i] = int64(e)
			}
			castInt64sInto(o, v)
			return o, nil
		}
		v, _ := x.AsInt64s()
		castInt64sInto(o, v)
		return o, nil
	}
	f, err := numbersOf(x)
	if err != nil {
		return nil, err
	}
	v := make([]int64, len(f))
	for i, e := range f {
		if math.IsNaN(e) {
			v[i] = math.MinInt64
			continue
		}
		v[i] = int64(e)
	}
	castInt64sInto(o, v)
	return o, nil
}

func formatFloat(v float64, bits int) string {
	switch {
	case math.IsNaN(v):
		return "NaN"
	case math.IsInf(v, 1):
		return "INF"
	case math.IsInf(v, -1):
		return "-INF"
	}
	return strconv.FormatFloat(v, 'g', -1, bits)
}

// numbersOf converts any non-complex tensor (strings parsed) to float64.
func numbersOf(x *Tensor) ([]float64, error) {
	if s, ok := x.Data.([]string); ok {
		out := make([]float64, len(s))
		for i, e := range s {
			switch strings.ToUpper(e) {
			case "INF", "+INF", "INFINITY", "+INFINITY":
				out[i] = math.Inf(1)
				continue
			case "-INF", "-INFINITY":
				out[i] = math.Inf(-1)
				continue
			case "NAN":
				out[i] = math.NaN()
				continue
			}
			f, err := strconv.ParseFloat(e, 64)
			if err != nil {
				return nil, fmt.Errorf("cannot cast string %q to a number", e)
			}
			out[i] = f
		}
		return out, nil
	}
	return x.AsFloat64s()
}

func buildCast(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(1, 1)
	to := DType(b.AttrInt("to", 0))
	if !to.Supported() {
		return nil, Unsupported("cast to %s", to)
	}
	return func(rc *RunContext, in, out []*Tensor) error {
		o, err := castTo(rc, in[0], to)
		out[0] = o
		return err
	}, nil
}

func buildCastLike(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(2, 2)
	return func(rc *RunContext, in, out []*Tensor) error {
		o, err := castTo(rc, in[0], in[1].DType)
		out[0] = o
		return err
	}, nil
}

// reshapeTo resolves a Reshape target shape.
func reshapeTo(in []int, spec []int64, allowZero bool) ([]int, error) {
	out := make([]int, len(spec))
	neg := -1
	known := 1
	for i, d := range spec {
		switch {
		case d == -1:
			if neg >= 0 {
				return nil, fmt.Errorf("shape %v has more than one -1", spec)
			}
			neg = i
			continue
		case d == 0 && !allowZero:
			if i >= len(in) {
				return nil, fmt.Errorf("shape %v copies dimension %d, which input shape %v lacks", spec, i, in)
			}
			out[i] = in[i]
		case d < 0 || d > MaxTensorElements:
			return nil, fmt.Errorf("shape %v has an out-of-range dimension %d", spec, d)
		default:
			out[i] = int(d)
		}
		known *= out[i]
	}
	total := shapeSize(in)
	if neg >= 0 {
		if known == 0 || total%known != 0 {
			return nil, fmt.Errorf("cannot reshape %v to %v", in, spec)
		}
		out[neg] = total / known
	} else if known != total {
		return nil, fmt.Errorf("cannot reshape %v (%d elements) to %v", in, total, spec)
	}
	return out, nil
}

func buildReshape(b *NodeBuilder) (Kernel, error) {
	if b.Opset < 5 {
		return nil, Unsupported("Reshape before opset 5")
	}
	b.CheckInputs(2, 2)
	allowZero := b.AttrInt("allowzero", 0) != 0
	return func(rc *RunContext, in, out []*Tensor) error {
		spec, err := in[1].AsInt64s()
		if err != nil {
			return err
		}
		shape, err := reshapeTo(in[0].Shape, spec, allowZero)
		if err != nil {
			return err
		}
		out[0] = rc.Copy(in[0], shape)
		return nil
	}, nil
}

func buildShape(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(1, 1)
	start := b.AttrInt("start", 0)
	end, hasEnd := b.AttrInt("end", 0), b.HasAttr("end")
	return func(rc *RunContext, in, out []*Tensor) error {
		r := int64(len(in[0].Shape))
		s, e := start, r
		if hasEnd {
			e = end
		}
		if s < 0 {
			s += r
		}
		if e < 0 {
			e += r
		}
		s = min(max(s, 0), r)
		e = min(max(e, 0), r)
		if e < s {
			e = s
		}
		o := rc.Alloc(Int64, []int{int(e - s)})
		od := o.Data.([]int64)
		for i := s; i < e; i++ {
			od[i-s] = int64(in[0].Shape[i])
		}
		out[0] = o
		return nil
	}, nil
}

func buildSize(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(1, 1)
	return func(rc *RunContext, in, out []*Tensor) error {
		o := rc.Alloc(Int64, []int{})
		o.Data.([]int64)[0] = int64(in[0].Len())
		out[0] = o
		return nil
	}, nil
}

func buildFlatten(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(1, 1)
	axis := b.AttrInt("axis", 1)
	return func(rc *RunContext, in, out []*Tensor) error {
		r := len(in[0].Shape)
		a := int(axis)
		if a < 0 {
			a += r
		}
		if a < 0 || a > r {
			return fmt.Errorf("axis %d is out of range for rank %d", axis, r)
		}
		out[0] = rc.Copy(in[0], []int{shapeSize(in[0].Shape[:a]), shapeSize(in[0].Shape[a:])})
		return nil
	}, nil
}

func buildSqueeze(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(1, 2)
	attrAxes := b.AttrInts("axes", nil)
	return func(rc *RunContext, in, out []*Tensor) error {
		axes, err := intsSince(b, 13, attrAxes, in, 1)
		if err != nil {
			return err
		}
		x := in[0]
		r := len(x.Shape)
		drop := make([]bool, r)
		if len(axes) == 0 {
			for i, d := range x.Shape {
				drop[i] = d == 1
			}
		}
		for _, a := range axes {
			ax, err := normAxis(a, r)
			if err != nil {
				return err
			}
			if x.Shape[ax] != 1 {
				return fmt.Errorf("cannot squeeze axis %d of size %d", a, x.Shape[ax])
			}
			drop[ax] = true
		}
		shape := []int{}
		for i, d := range x.Shape {
			if !drop[i] {
				shape = append(shape, d)
			}
		}
		out[0] = rc.Copy(x, shape)
		return nil
	}, nil
}

func buildUnsqueeze(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(1, 2)
	attrAxes := b.AttrInts("axes", nil)
	return func(rc *RunContext, in, out []*Tensor) error {
		axes, err := intsSince(b, 13, attrAxes, in, 1)
		if err != nil {
			return err
		}
		x := in[0]
		r := len(x.Shape) + len(axes)
		ins := make([]bool, r)
		for _, a := range axes {
			ax, err := normAxis(a, r)
			if err != nil {
				return err
			}
			if ins[ax] {
				return fmt.Errorf("axis %d repeated", a)
			}
			ins[ax] = true
		}
		shape := make([]int, r)
		j := 0
		for i := range shape {
			if ins[i] {
				shape[i] = 1
			} else {
				shape[i] = x.Shape[j]
				j++
			}
		}
		out[0] = rc.Copy(x, shape)
		return nil
	}, nil
}

func buildConcat(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(1, 1<<20)
	if !b.HasAttr("axis") && b.Opset >= 4 {
		return nil, fmt.Errorf("attribute axis is required")
	}
	axis := b.AttrInt("axis", 1)
	return func(rc *RunContext, in, out []*Tensor) error {
		x0 := in[0]
		r := len(x0.Shape)
		ax, err := normAxis(axis, r)
		if err != nil {
			return err
		}
		shape := append([]int{}, x0.Shape...)
		shape[ax] = 0
		for i, t := range in {
			if t.DType != x0.DType || len(t.Shape) != r {
				return fmt.Errorf("input %d (%s%v) does not match input 0 (%s%v)", i, t.DType, t.Shape, x0.DType, x0.Shape)
			}
			for d := range t.Shape {
				if d != ax && t.Shape[d] != x0.Shape[d] {
					return fmt.Errorf("input %d shape %v does not match input 0 shape %v off axis %d", i, t.Shape, x0.Shape, ax)
				}
			}
			shape[ax] += t.Shape[ax]
		}
		o := rc.Alloc(x0.DType, shape)
		outer := shapeSize(shape[:ax])
		inner := shapeSize(shape[ax+1:])
		row := shape[ax] * inner
		off := 0
		for _, t := range in {
			n := t.Shape[ax] * inner
			for i := 0; i < outer; i++ {
				copyRange(o.Data, i*row+off, t.Data, i*n, n)
			}
			off += n
		}
		out[0] = o
		return nil
	}, nil
}

func buildTranspose(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(1, 1)
	perm := b.AttrInts("perm", nil)
	return func(rc *RunContext, in, out []*Tensor) error {
		x := in[0]
		r := len(x.Shape)
		p := make([]int, r)
		if perm == nil {
			for i := range p {
				p[i] = r - 1 - i
			}
		} else {
			if len(perm) != r {
				return fmt.Errorf("perm %v does not match rank %d", perm, r)
			}
			seen := make([]bool, r)
			for i, v := range perm {
				a, err := normAxis(v, r)
				if err != nil || seen[a] {
					return fmt.Errorf("perm %v is not a permutation", perm)
				}
				seen[a] = true
				p[i] = a
			}
		}
		st := stridesOf(x.Shape)
		shape := make([]int, r)
		ost := make([]int, r)
		for i, a := range p {
			shape[i] = x.Shape[a]
			ost[i] = st[a]
		}
		out[0] = stridedNew(rc, x, shape, 0, ost)
		return nil
	}, nil
}

// Slice: attributes before opset 10, inputs from 10.
func buildSlice(b *NodeBuilder) (Kernel, error) {
	var aStarts, aEnds, aAxes []int64
	if b.Opset < 10 {
		b.CheckInputs(1, 1)
		aStarts = b.AttrInts("starts", nil)
		aEnds = b.AttrInts("ends", nil)
		aAxes = b.AttrInts("axes", nil)
		if len(aStarts) != len(aEnds) {
			return nil, fmt.Errorf("attributes starts (%d) and ends (%d) differ in length", len(aStarts), len(aEnds))
		}
	} else {
		b.CheckInputs(3, 5)
	}
	return func(rc *RunContext, in, out []*Tensor) error {
		starts, ends, axes := aStarts, aEnds, aAxes
		var steps []int64
		if b.Opset >= 10 {
			var err error
			if starts, _, err = intsInput(in, 1); err != nil {
				return err
			}
			if ends, _, err = intsInput(in, 2); err != nil {
				return err
			}
			if axes, _, err = intsInput(in, 3); err != nil {
				return err
			}
			if steps, _, err = intsInput(in, 4); err != nil {
				return err
			}
		}
		x := in[0]
		r := len(x.Shape)
		if len(starts) != len(ends) || (axes != nil && len(axes) != len(starts)) || (steps != nil && len(steps) != len(starts)) {
			return fmt.Errorf("starts, ends, axes and steps differ in length")
		}
		st := stridesOf(x.Shape)
		shape := append([]int{}, x.Shape...)
		ost := append([]int{}, st...)
		base := 0
		seen := make([]bool, r)
		for i := range starts {
			ax := i
			if axes != nil {
				a, err := normAxis(axes[i], r)
				if err != nil {
					return err
				}
				ax = a
			}
			if seen[ax] {
				return fmt.Errorf("axis %d repeated", ax)
			}
			seen[ax] = true
			step := int64(1)
			if steps != nil {
				step = steps[i]
			}
			if step == 0 {
				return fmt.Errorf("step is 0 on axis %d", ax)
			}
			dim := int64(x.Shape[ax])
			s, e := starts[i], ends[i]
			if s < 0 {
				s += dim
			}
			if e < 0 {
				e += dim
			}
			var n int64
			if step > 0 {
				s = min(max(s, 0), dim)
				e = min(max(e, 0), dim)
				if e > s {
					n = (e - s + step - 1) / step
				}
			} else {
				s = min(max(s, -1), dim-1)
				e = min(max(e, -1), dim-1)
				if s > e {
					n = (s - e + (-step) - 1) / (-step)
				}
			}
			shape[ax] = int(n)
			if n > 0 {
				base += int(s) * st[ax]
			}
			step = min(max(step, -dim-1), dim+1) // a larger step selects the same single element
			ost[ax] = int(step) * st[ax]
		}
		out[0] = stridedNew(rc, x, shape, base, ost)
		return nil
	}, nil
}

func buildSplit(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(1, 2)
	axis := b.AttrInt("axis", 0)
	attrSplit := b.AttrInts("split", nil)
	numOut := b.NumOutputs()
	return func(rc *RunContext, in, out []*Tensor) error {
		x := in[0]
		r := len(x.Shape)
		ax, err := normAxis(axis, r)
		if err != nil {
			return err
		}
		split, err := intsSince(b, 13, attrSplit, in, 1)
		if err != nil {
			return err
		}
		dim := x.Shape[ax]
		sizes := make([]int, numOut)
		if split == nil {
			if dim%numOut != 0 {
				return fmt.Errorf("axis %d of size %d does not split into %d equal parts", ax, dim, numOut)
			}
			for i := range sizes {
				sizes[i] = dim / numOut
			}
		} else {
			if len(split) != numOut {
				return fmt.Errorf("split has %d entries for %d outputs", len(split), numOut)
			}
			sum := 0
			for i, v := range split {
				if v < 0 || v > int64(dim) {
					return fmt.Errorf("split %v has a size out of range [0, %d]", split, dim)
				}
				sizes[i] = int(v)
				sum += int(v)
			}
			if sum != dim {
				return fmt.Errorf("split %v does not add up to axis size %d", split, dim)
			}
		}
		outer := shapeSize(x.Shape[:ax])
		inner := shapeSize(x.Shape[ax+1:])
		off := 0
		for i, sz := range sizes {
			shape := append([]int{}, x.Shape...)
			shape[ax] = sz
			o := rc.Alloc(x.DType, shape)
			n := sz * inner
			for j := 0; j < outer; j++ {
				copyRange(o.Data, j*n, x.Data, j*dim*inner+off, n)
			}
			off += n
			out[i] = o
		}
		return nil
	}, nil
}

func buildGather(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(2, 2)
	axis := b.AttrInt("axis", 0)
	return func(rc *RunContext, in, out []*Tensor) error {
		x, ind := in[0], in[1]
		r := len(x.Shape)
		ax, err := normAxis(axis, r)
		if err != nil {
			return err
		}
		idx, err := ind.AsInt64s()
		if err != nil {
			return err
		}
		dim := x.Shape[ax]
		for i, v := range idx {
			if v < -int64(dim) || v >= int64(dim) {
				return fmt.Errorf("index %d is out of range for axis %d of size %d", v, ax, dim)
			}
			if v < 0 {
				idx[i] = v + int64(dim)
			}
		}
		shape := append(append(append([]int{}, x.Shape[:ax]...), ind.Shape...), x.Shape[ax+1:]...)
		outer := shapeSize(x.Shape[:ax])
		inner := shapeSize(x.Shape[ax+1:])
		o := rc.Alloc(x.DType, shape)
		k := 0
		for i := 0; i < outer; i++ {
			for _, v := range idx {
				copyRange(o.Data, k, x.Data, (i*dim+int(v))*inner, inner)
				k += inner
			}
		}
		out[0] = o
		return nil
	}, nil
}

func buildGatherElements(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(2, 2)
	axis := b.AttrInt("axis", 0)
	return func(rc *RunContext, in, out []*Tensor) error {
		x, ind := in[0], in[1]
		r := len(x.Shape)
		ax, err := normAxis(axis, r)
		if err != nil {
			return err
		}
		if len(ind.Shape) != r {
			return fmt.Errorf("indices rank %d differs from data rank %d", len(ind.Shape), r)
		}
		pos, err := elementPositions(x.Shape, ind, ax)
		if err != nil {
			return err
		}
		out[0] = gatherNew(rc, x, ind.Shape, pos)
		return nil
	}, nil
}

// elementPositions returns, for each element of ind (indices of the same
// rank as shape, as GatherElements and ScatterElements take them), the flat
// position in a tensor of that shape of the element it addresses: the
// element's own coordinates with the one along axis ax replaced by its
// index value (negative counting from the end).
func elementPositions(shape []int, ind *Tensor, ax int) ([]int, error) {
	for d := range shape {
		if d != ax && ind.Shape[d] > shape[d] {
			return nil, fmt.Errorf("indices dimension %d is %d, over the data's %d", d, ind.Shape[d], shape[d])
		}
	}
	iv, err := ind.AsInt64s()
	if err != nil {
		return nil, err
	}
	st := stridesOf(shape)
	pos := stridedIndex(ind.Shape, 0, st) // flat index of each element's coordinate (without the axis adjusted)
	ist := stridesOf(ind.Shape)
	dim := int64(shape[ax])
	for i := range pos {
		c := (i / ist[ax]) % ind.Shape[ax]
		v := iv[i]
		if v < -dim || v >= dim {
			return nil, fmt.Errorf("index %d is out of range for axis %d of size %d", v, ax, dim)
		}
		if v < 0 {
			v += dim
		}
		pos[i] += (int(v) - c) * st[ax]
	}
	return pos, nil
}

func buildExpand(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(2, 2)
	return func(rc *RunContext, in, out []*Tensor) error {
		spec, err := in[1].AsInt64s()
		if err != nil {
			return err
		}
		sh := make([]int, len(spec))
		for i, v := range spec {
			if sh[i], err = toDim(v); err != nil {
				return fmt.Errorf("shape %v: %w", spec, err)
			}
		}
		shape, err := broadcastShapes(in[0].Shape, sh)
		if err != nil {
			return err
		}
		out[0] = gatherNew(rc, in[0], shape, bcastIndex(shape, in[0].Shape))
		return nil
	}, nil
}

func buildTile(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(2, 2)
	return func(rc *RunContext, in, out []*Tensor) error {
		x := in[0]
		reps, err := in[1].AsInt64s()
		if err != nil {
			return err
		}
		r := len(x.Shape)
		if len(reps) != r {
			return fmt.Errorf("repeats has %d entries for rank %d", len(reps), r)
		}
		shape := make([]int, r)
		for i, v := range reps {
			rep, err := toDim(v)
			if err != nil {
				return fmt.Errorf("repeats %v: %w", reps, err)
			}
			shape[i] = x.Shape[i] * rep
			if x.Shape[i] != 0 && shape[i]/x.Shape[i] != rep {
				return fmt.Errorf("repeats %v overflow", reps)
			}
		}
		n := checkAlloc(shape)
		idx := make([]int, n)
		st := stridesOf(x.Shape)
		ctr := make([]int, r)
		for i := 0; i < n; i++ {
			off := 0
			for d := 0; d < r; d++ {
				off += (ctr[d] % x.Shape[d]) * st[d]
			}
			idx[i] = off
			for d := r - 1; d >= 0; d-- {
				ctr[d]++
				if ctr[d] < shape[d] {
					break
				}
				ctr[d] = 0
			}
		}
		out[0] = gatherNew(rc, x, shape, idx)
		return nil
	}, nil
}

func buildConstantOfShape(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(1, 1)
	val := b.AttrTensor("value")
	if val != nil && val.Len() != 1 {
		return nil, fmt.Errorf("attribute value must have one element, has %d", val.Len())
	}
	return func(rc *RunContext, in, out []*Tensor) error {
		spec, err := in[0].AsInt64s()
		if err != nil {
			return err
		}
		shape := make([]int, len(spec))
		for i, v := range spec {
			if shape[i], err = toDim(v); err != nil {
				return fmt.Errorf("shape %v: %w", spec, err)
			}
		}
		if val == nil {
			out[0] = rc.Alloc(Float, shape)
			return nil
		}
		o := rc.Alloc(val.DType, shape)
		idx := make([]int, o.Len())
		gatherData(o.Data, val.Data, idx)
		out[0] = o
		return nil
	}, nil
}

func buildDropout(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(1, 3)
	if tm := b.Const(2); tm != nil {
		if d, ok := tm.Data.([]bool); ok && len(d) == 1 && d[0] {
			ratio := b.Const(1)
			if ratio == nil {
				return nil, Unsupported("training_mode=true (random dropout)")
			}
			if r, err := ratio.AsFloat64s(); err != nil || len(r) != 1 || r[0] != 0 {
				return nil, Unsupported("training_mode=true (random dropout)")
			}
		}
	}
	return func(rc *RunContext, in, out []*Tensor) error {
		if len(in) > 2 && in[2] != nil {
			if tm, ok := in[2].Data.([]bool); ok && len(tm) == 1 && tm[0] {
				zero := false
				if len(in) > 1 && in[1] != nil {
					r, err := in[1].AsFloat64s()
					zero = err == nil && len(r) == 1 && r[0] == 0
				}
				if !zero {
					return fmt.Errorf("training_mode=true with a non-zero ratio is not supported (inference only)")
				}
			}
		}
		out[0] = rc.Copy(in[0], nil)
		if len(out) > 1 {
			m := rc.Alloc(Bool, in[0].Shape)
			md := m.Data.([]bool)
			for i := range md {
				md[i] = true
			}
			out[1] = m
		}
		return nil
	}, nil
}

func init() {
	Register(
		OpDef{Name: "Constant", Since: 1, Build: buildConstant},
		OpDef{Name: "Cast", Since: 6, Build: buildCast},
		OpDef{Name: "CastLike", Since: 15, Build: buildCastLike},
		OpDef{Name: "Reshape", Since: 5, Build: buildReshape},
		OpDef{Name: "Shape", Since: 1, Build: buildShape},
		OpDef{Name: "Size", Since: 1, Build: buildSize},
		OpDef{Name: "Flatten", Since: 1, Build: buildFlatten},
		OpDef{Name: "Squeeze", Since: 1, Build: buildSqueeze},
		OpDef{Name: "Squeeze", Since: 13, Build: buildSqueeze},
		OpDef{Name: "Unsqueeze", Since: 1, Build: buildUnsqueeze},
		OpDef{Name: "Unsqueeze", Since: 13, Build: buildUnsqueeze},
		OpDef{Name: "Concat", Since: 1, Build: buildConcat},
		OpDef{Name: "Transpose", Since: 1, Build: buildTranspose},
		OpDef{Name: "Slice", Since: 1, Build: buildSlice},
		OpDef{Name: "Slice", Since: 10, Build: buildSlice},
		OpDef{Name: "Split", Since: 2, Build: buildSplit},
		OpDef{Name: "Split", Since: 13, Build: buildSplit},
		OpDef{Name: "Gather", Since: 1, Build: buildGather},
		OpDef{Name: "GatherElements", Since: 11, Build: buildGatherElements},
		OpDef{Name: "Expand", Since: 8, Build: buildExpand},
		OpDef{Name: "Tile", Since: 6, Build: buildTile},
		OpDef{Name: "ConstantOfShape", Since: 9, Build: buildConstantOfShape},
		OpDef{Name: "Dropout", Since: 7, Build: buildDropout},
	)
}
