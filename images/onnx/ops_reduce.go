package onnx

import (
	"fmt"
	"math"
	"sort"
)

// Reductions, ArgMax/ArgMin, Softmax family, TopK, CumSum.

// storeFloat64s writes float64 values into a numeric tensor (truncating for integers).
func storeFloat64s(o *Tensor, v []float64) {
	switch d := o.Data.(type) {
	case []float32:
		for i, x := range v {
			d[i] = float32(x)
		}
		if o.DType == Float16 {
			roundAllF16(d)
		}
	case []float64:
		copy(d, v)
	case []bool:
		for i, x := range v {
			d[i] = x != 0
		}
	default:
		iv := make([]int64, len(v))
		for i, x := range v {
			iv[i] = int64(x)
		}
		castInt64sInto(o, iv)
	}
}

type reduceKind int

const (
	redSum reduceKind = iota
	redMean
	redMax
	redMin
	redProd
	redL1
	redL2
	redLogSum
	redLogSumExp
	redSumSquare
)

// reduceAxes resolves the reduced axes; nil result with noop means identity.
func reduceAxes(axes []int64, r int) ([]bool, error) {
	red := make([]bool, r)
	if len(axes) == 0 {
		for i := range red {
			red[i] = true
		}
		return red, nil
	}
	for _, a := range axes {
		ax, err := normAxis(a, r)
		if err != nil {
			return nil, err
		}
		red[ax] = true
	}
	return red, nil
}

func buildReduce(kind reduceKind, inputSince int) func(b *NodeBuilder) (Kernel, error) {
	return func(b *NodeBuilder) (Kernel, error) {
		b.CheckInputs(1, 2)
		keep := b.AttrInt("keepdims", 1) != 0
		attrAxes := b.AttrInts("axes", nil)
		noop := b.AttrInt("noop_with_empty_axes", 0) != 0
		useInput := b.Opset >= inputSince
		return func(rc *RunContext, in, out []*Tensor) error {
			x := in[0]
			axes := attrAxes
			if useInput {
				v, _, err := intsInput(in, 1)
				if err != nil {
					return err
				}
				axes = v
				if len(axes) == 0 && noop {
					out[0] = rc.Copy(x, nil)
					return nil
				}
			}
			r := len(x.Shape)
			red, err := reduceAxes(axes, r)
			if err != nil {
				return err
			}
			var oshape, kshape []int
			for i, d := range x.Shape {
				if red[i] {
					kshape = append(kshape, 1)
					if keep {
						oshape = append(oshape, 1)
					}
				} else {
					kshape = append(kshape, d)
					oshape = append(oshape, d)
				}
			}
			if oshape == nil {
				oshape = []int{}
			}
			ost := stridesOf(kshape)
			for i := range ost {
				if red[i] {
					ost[i] = 0
				}
			}
			oidx := stridedIndex(x.Shape, 0, ost)
			n := shapeSize(kshape)
			acc := make([]float64, n)
			cnt := 1
			for i, d := range x.Shape {
				if red[i] {
					cnt *= d
				}
			}
			switch kind {
			case redMax:
				for i := range acc {
					acc[i] = math.Inf(-1)
				}
			case redMin:
				for i := range acc {
					acc[i] = math.Inf(1)
				}
			case redProd:
				for i := range acc {
					acc[i] = 1
				}
			}
			if x.DType.IsInt() && kind != redL2 && kind != redLogSum && kind != redLogSumExp {
				// Exact integer arithmetic (float64 would round int64 values past 2^53).
				iv, err := x.AsInt64s()
				if err != nil {
					return err
				}
				if cnt == 0 && (kind == redMax || kind == redMin) {
					return fmt.Errorf("reduction of an empty axis")
				}
				ia := make([]int64, n)
				switch kind {
				case redMax:
					for i := range ia {
						ia[i] = math.MinInt64
					}
				case redMin:
					for i := range ia {
						ia[i] = math.MaxInt64
					}
				case redProd:
					for i := range ia {
						ia[i] = 1
					}
				}
				for i, v := range iv {
					j := oidx[i]
					switch kind {
					case redSum, redMean:
						ia[j] += v
					case redMax:
						ia[j] = max(ia[j], v)
					case redMin:
						ia[j] = min(ia[j], v)
					case redProd:
						ia[j] *= v
					case redL1:
						if v < 0 {
							v = -v
						}
						ia[j] += v
					case redSumSquare:
						ia[j] += v * v
					}
				}
				if kind == redMean && cnt > 0 {
					for j := range ia {
						ia[j] /= int64(cnt)
					}
				}
				o := rc.Alloc(x.DType, oshape)
				castInt64sInto(o, ia)
				out[0] = o
				return nil
			}
			var xv []float64
			switch d := x.Data.(type) {
			case []float64:
				xv = d
			default:
				if xv, err = x.AsFloat64s(); err != nil {
					return err
				}
			}
			// For LogSumExp subtract the max for stability.
			var mx []float64
			if kind == redLogSumExp {
				mx = make([]float64, n)
				for i := range mx {
					mx[i] = math.Inf(-1)
				}
				for i, v := range xv {
					mx[oidx[i]] = math.Max(mx[oidx[i]], v)
				}
				for i := range mx {
					if math.IsInf(mx[i], 0) {
						mx[i] = 0
					}
				}
			}
			for i, v := range xv {
				j := oidx[i]
				switch kind {
				case redSum, redMean, redLogSum:
					acc[j] += v
				case redMax:
					if v > acc[j] || v != v {
						acc[j] = v
					}
				case redMin:
					if v < acc[j] || v != v {
						acc[j] = v
					}
				case redProd:
					acc[j] *= v
				case redL1:
					acc[j] += math.Abs(v)
				case redL2, redSumSquare:
					acc[j] += v * v
				case redLogSumExp:
					acc[j] += math.Exp(v - mx[j])
				}
			}
			for j := range acc {
				switch kind {
				case redMean:
					acc[j] /= float64(cnt)
				case redL2:
					acc[j] = math.Sqrt(acc[j])
				case redLogSum:
					acc[j] = math.Log(acc[j])
				case redLogSumExp:
					acc[j] = math.Log(acc[j]) + mx[j]
				}
			}
			if cnt == 0 && (kind == redMax || kind == redMin) && x.DType.IsInt() {
				return fmt.Errorf("reduction of an empty axis")
			}
			o := rc.Alloc(x.DType, oshape)
			storeFloat64s(o, acc)
			out[0] = o
			return nil
		}, nil
	}
}

func buildArg(isMax bool) func(b *NodeBuilder) (Kernel, error) {
	return func(b *NodeBuilder) (Kernel, error) {
		b.CheckInputs(1, 1)
		axis := b.AttrInt("axis", 0)
		keep := b.AttrInt("keepdims", 1) != 0
		last := b.AttrInt("select_last_index", 0) != 0
		return func(rc *RunContext, in, out []*Tensor) error {
			x := in[0]
			r := len(x.Shape)
			ax, err := normAxis(axis, r)
			if err != nil {
				return err
			}
			outer, dim, inner := shapeSize(x.Shape[:ax]), x.Shape[ax], shapeSize(x.Shape[ax+1:])
			if dim == 0 {
				return fmt.Errorf("axis %d is empty", ax)
			}
			var oshape []int
			oshape = append(oshape, x.Shape[:ax]...)
			if keep {
				oshape = append(oshape, 1)
			}
			oshape = append(oshape, x.Shape[ax+1:]...)
			o := rc.Alloc(Int64, oshape)
			od := o.Data.([]int64)
			// The common types are compared in place; the rest are widened.
			switch xd := x.Data.(type) {
			case []float32:
				argIndex(xd, od, outer, dim, inner, isMax, last)
			case []float64:
				argIndex(xd, od, outer, dim, inner, isMax, last)
			case []int32:
				argIndex(xd, od, outer, dim, inner, isMax, last)
			case []int64:
				argIndex(xd, od, outer, dim, inner, isMax, last)
			default:
				if x.DType.IsInt() {
					iv, err := x.AsInt64s()
					if err != nil {
						return err
					}
					argIndex(iv, od, outer, dim, inner, isMax, last)
				} else {
					xv, err := x.AsFloat64s()
					if err != nil {
						return err
					}
					argIndex(xv, od, outer, dim, inner, isMax, last)
				}
			}
			out[0] = o
			return nil
		}, nil
	}
}

func argIndex[T float32 | float64 | int32 | int64](xv []T, od []int64, outer, dim, inner int, isMax, last bool) {
	if inner == 1 && isMax && !last {
		// ArgMax over contiguous rows, first index on ties.
		for i := 0; i < outer; i++ {
			row := xv[i*dim : i*dim+dim]
			best, bv := 0, row[0]
			for j, v := range row[1:] {
				if v > bv {
					best, bv = j+1, v
				}
			}
			od[i] = int64(best)
		}
		return
	}
	for i := 0; i < outer; i++ {
		for k := 0; k < inner; k++ {
			best := 0
			bv := xv[i*dim*inner+k]
			for j := 1; j < dim; j++ {
				v := xv[(i*dim+j)*inner+k]
				better := v > bv
				if !isMax {
					better = v < bv
				}
				if better || (last && v == bv) {
					best, bv = j, v
				}
			}
			od[i*inner+k] = int64(best)
		}
	}
}

type softKind int

const (
	softMax softKind = iota
	softLogMax
	softHardMax
)

func buildSoftmax(kind softKind) func(b *NodeBuilder) (Kernel, error) {
	return func(b *NodeBuilder) (Kernel, error) {
		b.CheckInputs(1, 1)
		legacy := b.Opset < 13
		def := int64(-1)
		if legacy {
			def = 1
		}
		axis := b.AttrInt("axis", def)
		return func(rc *RunContext, in, out []*Tensor) error {
			x := in[0]
			r := len(x.Shape)
			ax, err := normAxis(axis, max(r, 1))
			if err != nil {
				return err
			}
			var outer, dim, inner int
			if legacy {
				outer, dim, inner = shapeSize(x.Shape[:ax]), shapeSize(x.Shape[ax:]), 1
			} else {
				outer, dim, inner = shapeSize(x.Shape[:ax]), x.Shape[ax], shapeSize(x.Shape[ax+1:])
			}
			o := rc.AllocLike(x)
			switch xd := x.Data.(type) {
			case []float32:
				softmaxF32(kind, xd, o.Data.([]float32), outer, dim, inner)
				if x.DType == Float16 {
					roundAllF16(o.Data.([]float32))
				}
			case []float64:
				softmaxF64(kind, xd, o.Data.([]float64), outer, dim, inner)
			default:
				return fmt.Errorf("input type %s is not supported, want a float type", x.DType)
			}
			out[0] = o
			return nil
		}, nil
	}
}

func softmaxF32(kind softKind, x, o []float32, outer, dim, inner int) {
	if kind == softMax && inner == 1 {
		softmaxRowsF32(x, o, outer, dim)
		return
	}
	for i := 0; i < outer; i++ {
		for k := 0; k < inner; k++ {
			base := i*dim*inner + k
			mx := float32(math.Inf(-1))
			arg := 0
			for j := 0; j < dim; j++ {
				if v := x[base+j*inner]; v > mx {
					mx, arg = v, j
				}
			}
			if kind == softHardMax {
				if dim > 0 {
					o[base+arg*inner] = 1
				}
				continue
			}
			var sum float64
			for j := 0; j < dim; j++ {
				e := fastExp(float64(x[base+j*inner] - mx))
				sum += e
				if kind == softMax {
					o[base+j*inner] = float32(e)
				}
			}
			if kind == softMax {
				inv := float32(1 / sum)
				for j := 0; j < dim; j++ {
					o[base+j*inner] *= inv
				}
			} else {
				ls := float32(math.Log(sum))
				for j := 0; j < dim; j++ {
					o[base+j*inner] = x[base+j*inner] - mx - ls
				}
			}
		}
	}
}

func softmaxF64(kind softKind, x, o []float64, outer, dim, inner int) {
	for i := 0; i < outer; i++ {
		for k := 0; k < inner; k++ {
			base := i*dim*inner + k
			mx := math.Inf(-1)
			arg := 0
			for j := 0; j < dim; j++ {
				if v := x[base+j*inner]; v > mx {
					mx, arg = v, j
				}
			}
			if kind == softHardMax {
				if dim > 0 {
					o[base+arg*inner] = 1
				}
				continue
			}
			var sum float64
			for j := 0; j < dim; j++ {
				e := math.Exp(x[base+j*inner] - mx)
				sum += e
				if kind == softMax {
					o[base+j*inner] = e
				}
			}
			for j := 0; j < dim; j++ {
				if kind == softMax {
					o[base+j*inner] /= sum
				} else {
					o[base+j*inner] = x[base+j*inner] - mx - math.Log(sum)
				}
			}
		}
	}
}

func buildTopK(b *NodeBuilder) (Kernel, error) {
	if b.Opset < 10 {
		b.CheckInputs(1, 1)
	} else {
		b.CheckInputs(2, 2)
	}
	b.CheckOutputs(2, 2)
	axis := b.AttrInt("axis", -1)
	attrK := b.AttrInt("k", -1)
	largest := b.AttrInt("largest", 1) != 0
	_ = b.AttrInt("sorted", 1) // the output is always sorted, which satisfies sorted=0 too
	return func(rc *RunContext, in, out []*Tensor) error {
		x := in[0]
		k := attrK
		if b.Opset >= 10 {
			kv, err := in[1].AsInt64s()
			if err != nil || len(kv) != 1 {
				return fmt.Errorf("K must be a one-element integer tensor")
			}
			k = kv[0]
		}
		r := len(x.Shape)
		ax, err := normAxis(axis, r)
		if err != nil {
			return err
		}
		dim := x.Shape[ax]
		if k < 0 || k > int64(dim) {
			return fmt.Errorf("k=%d is out of range for axis %d of size %d", k, ax, dim)
		}
		xv, err := x.AsFloat64s()
		if err != nil {
			return err
		}
		outer, inner := shapeSize(x.Shape[:ax]), shapeSize(x.Shape[ax+1:])
		shape := append([]int{}, x.Shape...)
		shape[ax] = int(k)
		ind := rc.Alloc(Int64, shape)
		id := ind.Data.([]int64)
		srcIdx := make([]int, len(id))
		order := make([]int, dim)
		for i := 0; i < outer; i++ {
			for c := 0; c < inner; c++ {
				base := i*dim*inner + c
				for j := range order {
					order[j] = j
				}
				sort.SliceStable(order, func(p, q int) bool {
					a, b := xv[base+order[p]*inner], xv[base+order[q]*inner]
					if largest {
						return a > b
					}
					return a < b
				})
				for j := 0; j < int(k); j++ {
					oi := (i*int(k)+j)*inner + c
					id[oi] = int64(order[j])
					srcIdx[oi] = base + order[j]*inner
				}
			}
		}
		out[0] = gatherNew(rc, x, shape, srcIdx)
		out[1] = ind
		return nil
	}, nil
}

func buildCumSum(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(2, 2)
	excl := b.AttrInt("exclusive", 0) != 0
	rev := b.AttrInt("reverse", 0) != 0
	return func(rc *RunContext, in, out []*Tensor) error {
		x := in[0]
		av, err := in[1].AsInt64s()
		if err != nil || len(av) != 1 {
			return fmt.Errorf("axis must be a one-element integer tensor")
		}
		ax, err := normAxis(av[0], len(x.Shape))
		if err != nil {
			return err
		}
		xv, err := x.AsFloat64s()
		if err != nil {
			return err
		}
		outer, dim, inner := shapeSize(x.Shape[:ax]), x.Shape[ax], shapeSize(x.Shape[ax+1:])
		res := make([]float64, len(xv))
		for i := 0; i < outer; i++ {
			for c := 0; c < inner; c++ {
				var s float64
				for jj := 0; jj < dim; jj++ {
					j := jj
					if rev {
						j = dim - 1 - jj
					}
					p := (i*dim+j)*inner + c
					if excl {
						res[p] = s
						s += xv[p]
					} else {
						s += xv[p]
						res[p] = s
					}
				}
			}
		}
		o := rc.AllocLike(x)
		storeFloat64s(o, res)
		out[0] = o
		return nil
	}, nil
}

func init() {
	reduces := []struct {
		name string
		kind reduceKind
	}{
		{"ReduceMean", redMean}, {"ReduceMax", redMax}, {"ReduceMin", redMin},
		{"ReduceProd", redProd}, {"ReduceL1", redL1}, {"ReduceL2", redL2}, {"ReduceLogSum", redLogSum},
		{"ReduceLogSumExp", redLogSumExp}, {"ReduceSumSquare", redSumSquare},
	}
	for _, r := range reduces {
		Register(OpDef{Name: r.name, Since: 1, Build: buildReduce(r.kind, 18)},
			OpDef{Name: r.name, Since: 18, Build: buildReduce(r.kind, 18)})
	}
	Register(
		OpDef{Name: "ReduceSum", Since: 1, Build: buildReduce(redSum, 13)},
		OpDef{Name: "ReduceSum", Since: 13, Build: buildReduce(redSum, 13)},
		OpDef{Name: "ArgMax", Since: 1, Build: buildArg(true)},
		OpDef{Name: "ArgMin", Since: 1, Build: buildArg(false)},
		OpDef{Name: "Softmax", Since: 1, Build: buildSoftmax(softMax)},
		OpDef{Name: "Softmax", Since: 13, Build: buildSoftmax(softMax)},
		OpDef{Name: "LogSoftmax", Since: 1, Build: buildSoftmax(softLogMax)},
		OpDef{Name: "LogSoftmax", Since: 13, Build: buildSoftmax(softLogMax)},
		OpDef{Name: "Hardmax", Since: 1, Build: buildSoftmax(softHardMax)},
		OpDef{Name: "Hardmax", Since: 13, Build: buildSoftmax(softHardMax)},
		OpDef{Name: "TopK", Since: 1, Build: buildTopK},
		OpDef{Name: "TopK", Since: 10, Build: buildTopK},
		OpDef{Name: "CumSum", Since: 11, Build: buildCumSum},
	)
}
