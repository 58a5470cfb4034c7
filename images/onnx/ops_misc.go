package onnx

import (
	"fmt"
	"math"
	"sort"
)

// Assorted tensor operators: Trilu, Range, Pad, OneHot, NonZero, EyeLike,
// DepthToSpace/SpaceToDepth, Compress, Scatter*, GatherND, ReverseSequence,
// Unique, Det, window functions.

func buildTrilu(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(1, 2)
	upper := b.AttrInt("upper", 1) != 0
	return func(rc *RunContext, in, out []*Tensor) error {
		x := in[0]
		if len(x.Shape) < 2 {
			return fmt.Errorf("input shape %v must have rank >= 2", x.Shape)
		}
		k := int64(0)
		if len(in) > 1 && in[1] != nil {
			v, err := in[1].AsInt64s()
			if err != nil || len(v) != 1 {
				return fmt.Errorf("k must be a one-element integer tensor")
			}
			k = v[0]
		}
		r := len(x.Shape)
		R, C := x.Shape[r-2], x.Shape[r-1]
		// keep element (i,j) iff j-i >= k (upper) or j-i <= k (lower); the rest stay zero
		o := rc.AllocLike(x)
		for p, n := 0, x.Len(); p < n; p++ {
			i, j := int64((p/C)%R), int64(p%C)
			if (upper && j-i >= k) || (!upper && j-i <= k) {
				copyRange(o.Data, p, x.Data, p, 1)
			}
		}
		out[0] = o
		return nil
	}, nil
}

func buildRange(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(3, 3)
	return func(rc *RunContext, in, out []*Tensor) error {
		for i := 0; i < 3; i++ {
			if in[i].Len() != 1 {
				return fmt.Errorf("input %d must be a scalar", i)
			}
		}
		st, _ := in[0].AsFloat64s()
		li, _ := in[1].AsFloat64s()
		de, _ := in[2].AsFloat64s()
		if de[0] == 0 {
			return fmt.Errorf("delta is 0")
		}
		cnt := math.Max(math.Ceil((li[0]-st[0])/de[0]), 0)
		if !(cnt <= MaxTensorElements) { // also catches NaN
			return fmt.Errorf("range of %v elements is too large", cnt)
		}
		n := int(cnt)
		o := rc.Alloc(in[0].DType, []int{n})
		if in[0].DType.IsInt() {
			s, _ := in[0].AsInt64s()
			d, _ := in[2].AsInt64s()
			v := make([]int64, n)
			for i := range v {
				v[i] = s[0] + int64(i)*d[0]
			}
			castInt64sInto(o, v)
		} else {
			v := make([]float64, n)
			switch in[0].DType {
			case Float:
				s, d := float32(st[0]), float32(de[0])
				acc := s
				for i := range v {
					v[i] = float64(acc)
					acc += d
				}
			default:
				for i := range v {
					v[i] = st[0] + float64(i)*de[0]
				}
			}
			storeFloat64s(o, v)
		}
		out[0] = o
		return nil
	}, nil
}

func buildPad(b *NodeBuilder) (Kernel, error) {
	mode := b.AttrString("mode", "constant")
	if mode != "constant" && mode != "reflect" && mode != "edge" {
		return nil, fmt.Errorf("attribute mode=%q is not constant, reflect or edge", mode)
	}
	attrPads := b.AttrInts("pads", nil)
	attrVal := float64(b.AttrFloat("value", 0))
	if b.Opset < 11 {
		b.CheckInputs(1, 1)
		if attrPads == nil {
			return nil, fmt.Errorf("attribute pads is required")
		}
	} else {
		b.CheckInputs(2, 4)
	}
	return func(rc *RunContext, in, out []*Tensor) error {
		x := in[0]
		r := len(x.Shape)
		pads := attrPads
		var cval *Tensor
		var axes []int64
		if b.Opset >= 11 {
			var err error
			if pads, err = in[1].AsInt64s(); err != nil {
				return err
			}
			if len(in) > 2 && in[2] != nil {
				cval = in[2]
			}
			if axes, _, err = intsInput(in, 3); err != nil {
				return err
			}
		}
		full := make([]int64, 2*r)
		if axes != nil {
			if len(pads) != 2*len(axes) {
				return fmt.Errorf("pads has %d entries for %d axes", len(pads), len(axes))
			}
			for i, a := range axes {
				ax, err := normAxis(a, r)
				if err != nil {
					return err
				}
				full[ax], full[ax+r] = pads[i], pads[i+len(axes)]
			}
		} else {
			if len(pads) != 2*r {
				return fmt.Errorf("pads has %d entries, want %d for rank %d", len(pads), 2*r, r)
			}
			copy(full, pads)
		}
		for _, p := range full {
			if p < -MaxTensorElements || p > MaxTensorElements {
				return fmt.Errorf("pads %v are out of range", pads)
			}
		}
		shape := make([]int, r)
		for i := range shape {
			shape[i] = x.Shape[i] + int(full[i]) + int(full[i+r])
			if shape[i] < 0 {
				return fmt.Errorf("pads %v shrink axis %d below zero", pads, i)
			}
			if mode != "constant" && x.Shape[i] == 0 && shape[i] > 0 {
				return fmt.Errorf("cannot %s-pad an empty axis", mode)
			}
		}
		n := checkAlloc(shape)
		idx := make([]int, n)
		st := stridesOf(x.Shape)
		ctr := make([]int, r)
		for p := 0; p < n; p++ {
			off := 0
			for d := 0; d < r; d++ {
				c := ctr[d] - int(full[d])
				dim := x.Shape[d]
				if c < 0 || c >= dim {
					switch mode {
					case "constant":
						off = -1
					case "edge":
						c = min(max(c, 0), dim-1)
					case "reflect":
						if dim == 1 {
							c = 0
						} else {
							period := 2 * (dim - 1)
							c = ((c % period) + period) % period
							if c >= dim {
								c = period - c
							}
						}
					}
				}
				if off < 0 {
					break
				}
				off += c * st[d]
			}
			if off < 0 {
				idx[p] = -1
			} else {
				idx[p] = off
			}
			for d := r - 1; d >= 0; d-- {
				ctr[d]++
				if ctr[d] < shape[d] {
					break
				}
				ctr[d] = 0
			}
		}
		// Fill value tensor of one element.
		fill := rc.Alloc(x.DType, []int{1})
		if cval != nil && cval.Len() > 0 {
			if cval.DType != x.DType {
				return fmt.Errorf("constant_value type %s differs from data type %s", cval.DType, x.DType)
			}
			copyRange(fill.Data, 0, cval.Data, 0, 1)
		} else if attrVal != 0 {
			storeFloat64s(fill, []float64{attrVal})
		}
		for i, v := range idx {
			if v < 0 {
				idx[i] = -1 // -1 - 0: take y[0]
			}
		}
		o := rc.Alloc(x.DType, shape)
		selectData(o.Data, x.Data, fill.Data, idx)
		if rc.ar != nil {
			rc.ar.release(fill)
		}
		out[0] = o
		return nil
	}, nil
}

func buildOneHot(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(3, 3)
	axis := b.AttrInt("axis", -1)
	return func(rc *RunContext, in, out []*Tensor) error {
		ind, err := in[0].AsFloat64s()
		if err != nil {
			return err
		}
		dv, err := in[1].AsFloat64s()
		if err != nil || len(dv) != 1 {
			return fmt.Errorf("depth must be a one-element tensor")
		}
		depth := int(dv[0])
		if depth <= 0 {
			return fmt.Errorf("depth %d must be positive", depth)
		}
		vals := in[2]
		if vals.Len() != 2 {
			return fmt.Errorf("values must have two elements")
		}
		r := len(in[0].Shape) + 1
		ax, err := normAxis(axis, r)
		if err != nil {
			return err
		}
		shape := append(append(append([]int{}, in[0].Shape[:ax]...), depth), in[0].Shape[ax:]...)
		outer, inner := shapeSize(in[0].Shape[:ax]), shapeSize(in[0].Shape[ax:])
		idx := make([]int, checkAlloc(shape))
		for i := range idx {
			idx[i] = 0 // off value
		}
		for o := 0; o < outer; o++ {
			for k := 0; k < inner; k++ {
				v := int(ind[o*inner+k])
				if v < 0 {
					v += depth
				}
				if v >= 0 && v < depth {
					idx[(o*depth+v)*inner+k] = 1
				}
			}
		}
		out[0] = gatherNew(rc, vals, shape, idx)
		return nil
	}, nil
}

func buildNonZero(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(1, 1)
	return func(rc *RunContext, in, out []*Tensor) error {
		x := in[0]
		var nz []int
		if s, ok := x.Data.([]string); ok {
			for i, v := range s {
				if v != "" {
					nz = append(nz, i)
				}
			}
		} else {
			v, err := x.AsFloat64s()
			if err != nil {
				return err
			}
			for i, e := range v {
				if e != 0 {
					nz = append(nz, i)
				}
			}
		}
		r := len(x.Shape)
		o := rc.Alloc(Int64, []int{r, len(nz)})
		od := o.Data.([]int64)
		st := stridesOf(x.Shape)
		for j, p := range nz {
			for d := 0; d < r; d++ {
				od[d*len(nz)+j] = int64((p / st[d]) % x.Shape[d])
			}
		}
		out[0] = o
		return nil
	}, nil
}

func buildEyeLike(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(1, 1)
	dt := DType(b.AttrInt("dtype", 0))
	k := int(b.AttrInt("k", 0))
	return func(rc *RunContext, in, out []*Tensor) error {
		x := in[0]
		if len(x.Shape) != 2 {
			return fmt.Errorf("input shape %v must be 2-D", x.Shape)
		}
		t := dt
		if t == Undefined {
			t = x.DType
		}
		R, C := x.Shape[0], x.Shape[1]
		v := make([]float64, R*C)
		for i := 0; i < R; i++ {
			if j := i + k; j >= 0 && j < C {
				v[i*C+j] = 1
			}
		}
		o := rc.Alloc(t, x.Shape)
		storeFloat64s(o, v)
		out[0] = o
		return nil
	}, nil
}

func buildDepthToSpace(toSpace bool) func(b *NodeBuilder) (Kernel, error) {
	return func(b *NodeBuilder) (Kernel, error) {
		b.CheckInputs(1, 1)
		bs := int(b.AttrInt("blocksize", 0))
		if bs <= 0 {
			return nil, fmt.Errorf("attribute blocksize=%d must be positive", bs)
		}
		mode := b.AttrString("mode", "DCR")
		if mode != "DCR" && mode != "CRD" {
			return nil, fmt.Errorf("attribute mode=%q is not DCR or CRD", mode)
		}
		return func(rc *RunContext, in, out []*Tensor) error {
			x := in[0]
			if len(x.Shape) != 4 {
				return fmt.Errorf("input shape %v must be 4-D", x.Shape)
			}
			N, C, H, W := x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3]
			var shape []int
			idx := []int{}
			if toSpace {
				if C%(bs*bs) != 0 {
					return fmt.Errorf("channels %d not divisible by blocksize^2", C)
				}
				oc := C / (bs * bs)
				shape = []int{N, oc, H * bs, W * bs}
				idx = make([]int, shapeSize(shape))
				p := 0
				for n := 0; n < N; n++ {
					for c := 0; c < oc; c++ {
						for h := 0; h < H*bs; h++ {
							for w := 0; w < W*bs; w++ {
								bh, bw := h%bs, w%bs
								var ic int
								if mode == "DCR" {
									ic = (bh*bs+bw)*oc + c
								} else {
									ic = c*bs*bs + bh*bs + bw
								}
								idx[p] = ((n*C+ic)*H+h/bs)*W + w/bs
								p++
							}
						}
					}
				}
			} else {
				if H%bs != 0 || W%bs != 0 {
					return fmt.Errorf("spatial dims %dx%d not divisible by blocksize %d", H, W, bs)
				}
				oc := C * bs * bs
				shape = []int{N, oc, H / bs, W / bs}
				idx = make([]int, shapeSize(shape))
				p := 0
				for n := 0; n < N; n++ {
					for c := 0; c < oc; c++ {
						blk, ic := c/C, c%C
						bh, bw := blk/bs, blk%bs
						for h := 0; h < H/bs; h++ {
							for w := 0; w < W/bs; w++ {
								idx[p] = ((n*C+ic)*H+h*bs+bh)*W + w*bs + bw
								p++
							}
						}
					}
				}
			}
			out[0] = gatherNew(rc, x, shape, idx)
			return nil
		}, nil
	}
}

func buildCompress(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(2, 2)
	hasAxis := b.HasAttr("axis")
	axis := b.AttrInt("axis", 0)
	return func(rc *RunContext, in, out []*Tensor) error {
		x := in[0]
		cond, ok := in[1].Data.([]bool)
		if !ok {
			return fmt.Errorf("condition must be bool")
		}
		if !hasAxis {
			var idx []int
			for i := 0; i < x.Len() && i < len(cond); i++ {
				if cond[i] {
					idx = append(idx, i)
				}
			}
			out[0] = gatherNew(rc, x, []int{len(idx)}, idx)
			return nil
		}
		ax, err := normAxis(axis, len(x.Shape))
		if err != nil {
			return err
		}
		var sel []int
		for i := 0; i < x.Shape[ax] && i < len(cond); i++ {
			if cond[i] {
				sel = append(sel, i)
			}
		}
		outer, dim, inner := shapeSize(x.Shape[:ax]), x.Shape[ax], shapeSize(x.Shape[ax+1:])
		shape := append([]int{}, x.Shape...)
		shape[ax] = len(sel)
		o := rc.Alloc(x.DType, shape)
		k := 0
		for i := 0; i < outer; i++ {
			for _, s := range sel {
				copyRange(o.Data, k, x.Data, (i*dim+s)*inner, inner)
				k += inner
			}
		}
		out[0] = o
		return nil
	}, nil
}

// scatterApply writes upd into out at flat positions pos with a reduction.
func scatterApply(o, upd *Tensor, pos []int, reduction string) error {
	if reduction == "none" || reduction == "" {
		for i, p := range pos {
			copyRange(o.Data, p, upd.Data, i, 1)
		}
		return nil
	}
	ov, err := o.AsFloat64s()
	if err != nil {
		return err
	}
	uv, err := upd.AsFloat64s()
	if err != nil {
		return err
	}
	for i, p := range pos {
		switch reduction {
		case "add":
			ov[p] += uv[i]
		case "mul":
			ov[p] *= uv[i]
		case "max":
			ov[p] = math.Max(ov[p], uv[i])
		case "min":
			ov[p] = math.Min(ov[p], uv[i])
		}
	}
	storeFloat64s(o, ov)
	return nil
}

// scatterCopy sets out[0] to a copy of x with upd written at the flat
// positions pos (ScatterElements, ScatterND).
func scatterCopy(rc *RunContext, out []*Tensor, x, upd *Tensor, pos []int, reduction string) error {
	o := rc.Copy(x, nil)
	if err := scatterApply(o, upd, pos, reduction); err != nil {
		return err
	}
	out[0] = o
	return nil
}

func checkReduction(b *NodeBuilder) string {
	red := b.AttrString("reduction", "none")
	switch red {
	case "none", "add", "mul", "max", "min":
	default:
		b.Errorf("attribute reduction=%q is not none, add, mul, max or min", red)
	}
	return red
}

func buildScatterElements(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(3, 3)
	axis := b.AttrInt("axis", 0)
	red := checkReduction(b)
	return func(rc *RunContext, in, out []*Tensor) error {
		x, ind, upd := in[0], in[1], in[2]
		r := len(x.Shape)
		ax, err := normAxis(axis, r)
		if err != nil {
			return err
		}
		if !sameShape(ind.Shape, upd.Shape) || len(ind.Shape) != r {
			return fmt.Errorf("indices shape %v and updates shape %v must match and have rank %d", ind.Shape, upd.Shape, r)
		}
		pos, err := elementPositions(x.Shape, ind, ax)
		if err != nil {
			return err
		}
		return scatterCopy(rc, out, x, upd, pos, red)
	}, nil
}

func buildScatterND(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(3, 3)
	red := checkReduction(b)
	return func(rc *RunContext, in, out []*Tensor) error {
		x, ind, upd := in[0], in[1], in[2]
		iv, err := ind.AsInt64s()
		if err != nil {
			return err
		}
		if len(ind.Shape) == 0 {
			return fmt.Errorf("indices must have rank >= 1")
		}
		k := ind.Shape[len(ind.Shape)-1]
		if k > len(x.Shape) {
			return fmt.Errorf("index depth %d exceeds data rank %d", k, len(x.Shape))
		}
		st := stridesOf(x.Shape)
		slice := shapeSize(x.Shape[k:])
		nIdx := shapeSize(ind.Shape[:len(ind.Shape)-1])
		if upd.Len() != nIdx*slice {
			return fmt.Errorf("updates shape %v does not match", upd.Shape)
		}
		pos := make([]int, 0, upd.Len())
		for i := 0; i < nIdx; i++ {
			off := 0
			for d := 0; d < k; d++ {
				v := iv[i*k+d]
				if v < 0 {
					v += int64(x.Shape[d])
				}
				if v < 0 || v >= int64(x.Shape[d]) {
					return fmt.Errorf("index %d is out of range for axis %d", iv[i*k+d], d)
				}
				off += int(v) * st[d]
			}
			for j := 0; j < slice; j++ {
				pos = append(pos, off+j)
			}
		}
		return scatterCopy(rc, out, x, upd, pos, red)
	}, nil
}

func buildGatherND(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(2, 2)
	bd := int(b.AttrInt("batch_dims", 0))
	return func(rc *RunContext, in, out []*Tensor) error {
		x, ind := in[0], in[1]
		iv, err := ind.AsInt64s()
		if err != nil {
			return err
		}
		ir := len(ind.Shape)
		if ir < 1 || bd >= ir || bd > len(x.Shape) {
			return fmt.Errorf("bad indices shape %v for batch_dims %d", ind.Shape, bd)
		}
		k := ind.Shape[ir-1]
		if bd+k > len(x.Shape) {
			return fmt.Errorf("index depth %d too large for data shape %v", k, x.Shape)
		}
		batch := shapeSize(x.Shape[:bd])
		shape := append(append([]int{}, ind.Shape[:ir-1]...), x.Shape[bd+k:]...)
		slice := shapeSize(x.Shape[bd+k:])
		nPer := shapeSize(ind.Shape[bd : ir-1])
		st := stridesOf(x.Shape)
		perBatch := shapeSize(x.Shape[bd:])
		idx := make([]int, 0, shapeSize(shape))
		for bi := 0; bi < batch; bi++ {
			for i := 0; i < nPer; i++ {
				off := bi * perBatch
				row := iv[(bi*nPer+i)*k:]
				for d := 0; d < k; d++ {
					v := row[d]
					dim := int64(x.Shape[bd+d])
					if v < 0 {
						v += dim
					}
					if v < 0 || v >= dim {
						return fmt.Errorf("index %d is out of range", row[d])
					}
					off += int(v) * st[bd+d]
				}
				for j := 0; j < slice; j++ {
					idx = append(idx, off+j)
				}
			}
		}
		out[0] = gatherNew(rc, x, shape, idx)
		return nil
	}, nil
}

func buildReverseSequence(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(2, 2)
	batchAxis := int(b.AttrInt("batch_axis", 1))
	timeAxis := int(b.AttrInt("time_axis", 0))
	if !((batchAxis == 0 && timeAxis == 1) || (batchAxis == 1 && timeAxis == 0)) {
		return nil, fmt.Errorf("batch_axis=%d and time_axis=%d must be 0 and 1", batchAxis, timeAxis)
	}
	return func(rc *RunContext, in, out []*Tensor) error {
		x := in[0]
		lens, err := in[1].AsInt64s()
		if err != nil {
			return err
		}
		if len(x.Shape) < 2 || len(lens) != x.Shape[batchAxis] {
			return fmt.Errorf("sequence_lens has %d entries, want %d", len(lens), x.Shape[batchAxis])
		}
		for _, l := range lens {
			if l < 0 || l > int64(x.Shape[timeAxis]) {
				return fmt.Errorf("sequence length %d is out of range [0, %d]", l, x.Shape[timeAxis])
			}
		}
		st := stridesOf(x.Shape)
		n := x.Len()
		idx := make([]int, n)
		for p := 0; p < n; p++ {
			t := (p / st[timeAxis]) % x.Shape[timeAxis]
			bb := (p / st[batchAxis]) % x.Shape[batchAxis]
			l := int(lens[bb])
			if t < l {
				idx[p] = p + (l-1-2*t)*st[timeAxis]
			} else {
				idx[p] = p
			}
		}
		out[0] = gatherNew(rc, x, x.Shape, idx)
		return nil
	}, nil
}

func buildDet(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(1, 1)
	return func(rc *RunContext, in, out []*Tensor) error {
		x := in[0]
		r := len(x.Shape)
		if r < 2 || x.Shape[r-1] != x.Shape[r-2] {
			return fmt.Errorf("input shape %v must end in a square matrix", x.Shape)
		}
		n := x.Shape[r-1]
		xv, err := x.AsFloat64s()
		if err != nil {
			return err
		}
		batch := shapeSize(x.Shape[:r-2])
		res := make([]float64, batch)
		a := make([]float64, n*n)
		for bi := 0; bi < batch; bi++ {
			copy(a, xv[bi*n*n:(bi+1)*n*n])
			det := 1.0
			for c := 0; c < n; c++ {
				p := c
				for i := c + 1; i < n; i++ {
					if math.Abs(a[i*n+c]) > math.Abs(a[p*n+c]) {
						p = i
					}
				}
				if a[p*n+c] == 0 {
					det = 0
					break
				}
				if p != c {
					for j := 0; j < n; j++ {
						a[p*n+j], a[c*n+j] = a[c*n+j], a[p*n+j]
					}
					det = -det
				}
				det *= a[c*n+c]
				for i := c + 1; i < n; i++ {
					f := a[i*n+c] / a[c*n+c]
					for j := c; j < n; j++ {
						a[i*n+j] -= f * a[c*n+j]
					}
				}
			}
			res[bi] = det
		}
		o := rc.Alloc(x.DType, append([]int{}, x.Shape[:r-2]...))
		storeFloat64s(o, res)
		out[0] = o
		return nil
	}, nil
}

type windowKind int

const (
	winHann windowKind = iota
	winHamming
	winBlackman
)

func buildWindow(kind windowKind) func(b *NodeBuilder) (Kernel, error) {
	return func(b *NodeBuilder) (Kernel, error) {
		b.CheckInputs(1, 1)
		periodic := b.AttrInt("periodic", 1) != 0
		dt := DType(b.AttrInt("output_datatype", int64(Float)))
		return func(rc *RunContext, in, out []*Tensor) error {
			sv, err := in[0].AsInt64s()
			if err != nil || len(sv) != 1 || sv[0] < 0 || sv[0] > 1<<24 {
				return fmt.Errorf("size must be a non-negative scalar")
			}
			n := int(sv[0])
			N := float64(n)
			if !periodic {
				N = float64(n - 1)
			}
			v := make([]float64, n)
			for i := range v {
				x := 2 * math.Pi * float64(i) / N
				switch kind {
				case winHann:
					v[i] = 0.5 - 0.5*math.Cos(x)
				case winHamming:
					v[i] = 25.0/46 - 21.0/46*math.Cos(x)
				case winBlackman:
					v[i] = 0.42 - 0.5*math.Cos(x) + 0.08*math.Cos(2*x)
				}
			}
			o := rc.Alloc(dt, []int{n})
			storeFloat64s(o, v)
			out[0] = o
			return nil
		}, nil
	}
}

func buildUnique(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(1, 1)
	sorted := b.AttrInt("sorted", 1) != 0
	hasAxis := b.HasAttr("axis")
	axis := b.AttrInt("axis", 0)
	return func(rc *RunContext, in, out []*Tensor) error {
		x := in[0]
		// View x as [outer, dim, inner]; the unit of uniqueness is a slice [outer, inner] at one index of dim.
		shape := []int{x.Len()}
		ax := 0
		if hasAxis {
			var err error
			if ax, err = normAxis(axis, len(x.Shape)); err != nil {
				return err
			}
			shape = x.Shape
		}
		outer, dim, inner := shapeSize(shape[:ax]), shape[ax], shapeSize(shape[ax+1:])
		strs, isStr := x.Data.([]string)
		var fv []float64
		if !isStr {
			var err error
			if fv, err = x.AsFloat64s(); err != nil {
				return err
			}
		}
		at := func(k, o, i int) int { return (o*dim+k)*inner + i }
		less := func(a, c int) bool { // lexicographic over the slices
			for o := 0; o < outer; o++ {
				for i := 0; i < inner; i++ {
					p, q := at(a, o, i), at(c, o, i)
					if isStr {
						if strs[p] != strs[q] {
							return strs[p] < strs[q]
						}
					} else if fv[p] != fv[q] {
						return fv[p] < fv[q]
					}
				}
			}
			return false
		}
		key := func(k int) string {
			var sb []byte
			for o := 0; o < outer; o++ {
				for i := 0; i < inner; i++ {
					if isStr {
						sb = append(sb, strs[at(k, o, i)]...)
						sb = append(sb, 0)
					} else {
						sb = fmt.Appendf(sb, "%v,", fv[at(k, o, i)])
					}
				}
			}
			return string(sb)
		}
		first := map[string]int{}
		var uniq []int
		inv := make([]int, dim)
		var counts []int64
		for k := 0; k < dim; k++ {
			kk := key(k)
			j, ok := first[kk]
			if !ok {
				j = len(uniq)
				first[kk] = j
				uniq = append(uniq, k)
				counts = append(counts, 0)
			}
			inv[k] = j
			counts[j]++
		}
		order := make([]int, len(uniq))
		for i := range order {
			order[i] = i
		}
		if sorted {
			sort.SliceStable(order, func(a, c int) bool { return less(uniq[order[a]], uniq[order[c]]) })
		}
		rank := make([]int64, len(order))
		for newPos, old := range order {
			rank[old] = int64(newPos)
		}
		oshape := append([]int{}, shape...)
		oshape[ax] = len(order)
		idx := make([]int, 0, outer*len(order)*inner)
		for o := 0; o < outer; o++ {
			for _, old := range order {
				for i := 0; i < inner; i++ {
					idx = append(idx, at(uniq[old], o, i))
				}
			}
		}
		out[0] = gatherNew(rc, x, oshape, idx)
		if len(out) > 1 {
			t := rc.Alloc(Int64, []int{len(order)})
			for newPos, old := range order {
				t.Data.([]int64)[newPos] = int64(uniq[old])
			}
			out[1] = t
		}
		if len(out) > 2 {
			t := rc.Alloc(Int64, []int{dim})
			for k := range inv {
				t.Data.([]int64)[k] = rank[inv[k]]
			}
			out[2] = t
		}
		if len(out) > 3 {
			t := rc.Alloc(Int64, []int{len(order)})
			for newPos, old := range order {
				t.Data.([]int64)[newPos] = counts[old]
			}
			out[3] = t
		}
		return nil
	}, nil
}

func buildMaxUnpool(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(2, 3)
	wa := readWindowAttrs(b, true)
	return func(rc *RunContext, in, out []*Tensor) error {
		x, ind := in[0], in[1]
		if len(x.Shape) < 3 || !sameShape(x.Shape, ind.Shape) {
			return fmt.Errorf("X shape %v and I shape %v must match and have rank >= 3", x.Shape, ind.Shape)
		}
		ns := len(x.Shape) - 2
		if len(wa.kernel) != ns {
			return fmt.Errorf("kernel_shape %v does not match %d spatial dimensions", wa.kernel, ns)
		}
		oshape := append([]int{}, x.Shape[:2]...)
		for i := 0; i < ns; i++ {
			s, pb, pe := 1, 0, 0
			if wa.strides != nil {
				s = int(wa.strides[i])
			}
			if wa.pads != nil {
				pb, pe = int(wa.pads[i]), int(wa.pads[i+ns])
			}
			oshape = append(oshape, (x.Shape[2+i]-1)*s+int(wa.kernel[i])-pb-pe)
		}
		defShape := append([]int{}, oshape...)
		if t := optIn(in, 2); t != nil {
			v, err := t.AsInt64s()
			if err != nil || len(v) != len(oshape) {
				return fmt.Errorf("output_shape must have %d entries", len(oshape))
			}
			for i, d := range v {
				oshape[i] = int(d)
			}
		}
		o := rc.Alloc(x.DType, oshape)
		iv, err := ind.AsInt64s()
		if err != nil {
			return err
		}
		// Indices address the default unpooled shape; place them by coordinates.
		dst, ost := stridesOf(defShape), stridesOf(oshape)
		n := shapeSize(defShape)
		pos := make([]int, len(iv))
		for i, p := range iv {
			if p < 0 || p >= int64(n) {
				return fmt.Errorf("index %d is out of range for %d elements", p, n)
			}
			q, off := int(p), 0
			for d := range defShape {
				c := q / dst[d]
				q %= dst[d]
				if c >= oshape[d] {
					return fmt.Errorf("index %d does not fit output_shape %v", p, oshape)
				}
				off += c * ost[d]
			}
			pos[i] = off
		}
		if err := scatterApply(o, x, pos, "none"); err != nil {
			return err
		}
		out[0] = o
		return nil
	}, nil
}

func init() {
	Register(
		OpDef{Name: "Trilu", Since: 14, Build: buildTrilu},
		OpDef{Name: "Range", Since: 11, Build: buildRange},
		OpDef{Name: "Pad", Since: 2, Build: buildPad},
		OpDef{Name: "Pad", Since: 11, Build: buildPad},
		OpDef{Name: "OneHot", Since: 9, Build: buildOneHot},
		OpDef{Name: "NonZero", Since: 9, Build: buildNonZero},
		OpDef{Name: "EyeLike", Since: 9, Build: buildEyeLike},
		OpDef{Name: "DepthToSpace", Since: 1, Build: buildDepthToSpace(true)},
		OpDef{Name: "SpaceToDepth", Since: 1, Build: buildDepthToSpace(false)},
		OpDef{Name: "Compress", Since: 9, Build: buildCompress},
		OpDef{Name: "ScatterElements", Since: 11, Build: buildScatterElements},
		OpDef{Name: "Scatter", Since: 9, Build: buildScatterElements},
		OpDef{Name: "ScatterND", Since: 11, Build: buildScatterND},
		OpDef{Name: "GatherND", Since: 11, Build: buildGatherND},
		OpDef{Name: "ReverseSequence", Since: 10, Build: buildReverseSequence},
		OpDef{Name: "Det", Since: 11, Build: buildDet},
		OpDef{Name: "HannWindow", Since: 17, Build: buildWindow(winHann)},
		OpDef{Name: "HammingWindow", Since: 17, Build: buildWindow(winHamming)},
		OpDef{Name: "BlackmanWindow", Since: 17, Build: buildWindow(winBlackman)},
		OpDef{Name: "Unique", Since: 11, Build: buildUnique},
		OpDef{Name: "MaxUnpool", Since: 9, Build: buildMaxUnpool},
	)
}
