package onnx

import (
	"cmp"
	"fmt"
	"math"
)

// Arithmetic, comparison and logic operators with numpy broadcasting.

type number interface {
	~int8 | ~int16 | ~int32 | ~int64 | ~uint8 | ~uint16 | ~uint32 | ~uint64 | ~float32 | ~float64
}

type arithKind int

const (
	opAdd arithKind = iota
	opSub
	opMul
	opDiv
	opMax
	opMin
	opModFloor // integer mod with the sign of the divisor (numpy)
	opModTrunc // fmod: sign of the dividend
)

func isFloatT[T number]() bool {
	var z T
	switch any(z).(type) {
	case float32, float64:
		return true
	}
	return false
}

func arithRow[T number](op arithKind, o, a, b []T, as, bs int) {
	n := len(o)
	switch {
	case as == 1 && bs == 1:
		a, b = a[:n], b[:n]
		switch op {
		case opAdd:
			for i := range o {
				o[i] = a[i] + b[i]
			}
		case opSub:
			for i := range o {
				o[i] = a[i] - b[i]
			}
		case opMul:
			for i := range o {
				o[i] = a[i] * b[i]
			}
		default:
			for i := range o {
				o[i] = arith1(op, a[i], b[i])
			}
		}
	case as == 1 && bs == 0:
		a = a[:n]
		y := b[0]
		switch op {
		case opAdd:
			for i := range o {
				o[i] = a[i] + y
			}
		case opSub:
			for i := range o {
				o[i] = a[i] - y
			}
		case opMul:
			for i := range o {
				o[i] = a[i] * y
			}
		default:
			for i := range o {
				o[i] = arith1(op, a[i], y)
			}
		}
	case as == 0 && bs == 1:
		b = b[:n]
		x := a[0]
		switch op {
		case opAdd:
			for i := range o {
				o[i] = x + b[i]
			}
		case opSub:
			for i := range o {
				o[i] = x - b[i]
			}
		case opMul:
			for i := range o {
				o[i] = x * b[i]
			}
		default:
			for i := range o {
				o[i] = arith1(op, x, b[i])
			}
		}
	default:
		v := arith1(op, a[0], b[0])
		for i := range o {
			o[i] = v
		}
	}
}

func arith1[T number](op arithKind, x, y T) T {
	switch op {
	case opAdd:
		return x + y
	case opSub:
		return x - y
	case opMul:
		return x * y
	case opDiv:
		if !isFloatT[T]() && y == 0 {
			return 0
		}
		return x / y
	case opMax:
		if x != x || y != y {
			return T(math.NaN())
		}
		return max(x, y)
	case opMin:
		if x != x || y != y {
			return T(math.NaN())
		}
		return min(x, y)
	case opModFloor, opModTrunc:
		if isFloatT[T]() {
			r := T(math.Mod(float64(x), float64(y)))
			if op == opModFloor && r != 0 && (r < 0) != (y < 0) {
				r += y
			}
			return r
		}
		if y == 0 {
			return 0
		}
		xi, yi := int64(x), int64(y)
		r := xi % yi
		if op == opModFloor && r != 0 && (r < 0) != (yi < 0) {
			r += yi
		}
		return T(r)
	}
	return 0
}

func arithT[T number](op arithKind, o, a, b *Tensor) {
	od, ad, bd := o.Data.([]T), a.Data.([]T), b.Data.([]T)
	bcastRows(o.Shape, a.Shape, b.Shape, func(oo, ao, bo, n, as, bs int) {
		arithRow(op, od[oo:oo+n], ad[ao:], bd[bo:], as, bs)
	})
}

// arith computes a op b into a new tensor of a's type.
func arith(rc *RunContext, op arithKind, a, b *Tensor) (*Tensor, error) {
	if a.DType != b.DType {
		return nil, fmt.Errorf("input types differ: %s and %s", a.DType, b.DType)
	}
	shape, err := broadcastShapes(a.Shape, b.Shape)
	if err != nil {
		return nil, err
	}
	o := rc.Alloc(a.DType, shape)
	switch o.Data.(type) {
	case []float32:
		arithT[float32](op, o, a, b)
		if a.DType == Float16 {
			roundAllF16(o.Data.([]float32))
		}
	case []float64:
		arithT[float64](op, o, a, b)
	case []int8:
		arithT[int8](op, o, a, b)
	case []int16:
		arithT[int16](op, o, a, b)
	case []int32:
		arithT[int32](op, o, a, b)
	case []int64:
		arithT[int64](op, o, a, b)
	case []uint8:
		arithT[uint8](op, o, a, b)
	case []uint16:
		arithT[uint16](op, o, a, b)
	case []uint32:
		arithT[uint32](op, o, a, b)
	case []uint64:
		arithT[uint64](op, o, a, b)
	default:
		return nil, fmt.Errorf("type %s is not supported", a.DType)
	}
	return o, nil
}

func roundAllF16(d []float32) {
	for i, v := range d {
		d[i] = roundF16(v)
	}
}

func buildArith(op arithKind) func(b *NodeBuilder) (Kernel, error) {
	return func(b *NodeBuilder) (Kernel, error) {
		b.CheckInputs(2, 2)
		b.CheckOutputs(1, 1)
		if b.Opset < 7 && b.AttrInt("broadcast", 0) != 0 && b.HasAttr("axis") {
			return nil, Unsupported("legacy broadcast with axis")
		}
		return func(rc *RunContext, in, out []*Tensor) error {
			o, err := arith(rc, op, in[0], in[1])
			out[0] = o
			return err
		}, nil
	}
}

// variadic builds Sum/Max/Min/Mean.
func buildVariadic(op arithKind, mean bool) func(b *NodeBuilder) (Kernel, error) {
	return func(b *NodeBuilder) (Kernel, error) {
		b.CheckInputs(1, 1<<20)
		b.CheckOutputs(1, 1)
		return func(rc *RunContext, in, out []*Tensor) error {
			acc := rc.Copy(in[0], nil)
			for _, t := range in[1:] {
				next, err := arith(rc, op, acc, t)
				if err != nil {
					return err
				}
				if rc.ar != nil {
					rc.ar.release(acc)
				}
				acc = next
			}
			if mean {
				switch d := acc.Data.(type) {
				case []float32:
					k := float32(len(in))
					for i := range d {
						d[i] /= k
					}
				case []float64:
					k := float64(len(in))
					for i := range d {
						d[i] /= k
					}
				default:
					return fmt.Errorf("Mean needs a float type, got %s", acc.DType)
				}
			}
			out[0] = acc
			return nil
		}, nil
	}
}

func buildMod(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(2, 2)
	fmod := b.AttrInt("fmod", 0)
	op := opModFloor
	if fmod == 1 {
		op = opModTrunc
	} else if fmod != 0 {
		return nil, fmt.Errorf("attribute fmod=%d must be 0 or 1", fmod)
	}
	return func(rc *RunContext, in, out []*Tensor) error {
		if in[0].DType.IsFloat() && op != opModTrunc {
			return fmt.Errorf("Mod on %s needs fmod=1", in[0].DType)
		}
		o, err := arith(rc, op, in[0], in[1])
		out[0] = o
		return err
	}, nil
}

func buildPow(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(2, 2)
	return func(rc *RunContext, in, out []*Tensor) error {
		a, e := in[0], in[1]
		shape, err := broadcastShapes(a.Shape, e.Shape)
		if err != nil {
			return err
		}
		o := rc.Alloc(a.DType, shape)
		ef, err := e.AsFloat64s()
		if err != nil {
			return err
		}
		switch od := o.Data.(type) {
		case []float32:
			ad := a.Data.([]float32)
			bcastRows(shape, a.Shape, e.Shape, func(oo, ao, bo, n, as, bs int) {
				for i := 0; i < n; i++ {
					od[oo+i] = float32(math.Pow(float64(ad[ao+i*as]), ef[bo+i*bs]))
				}
			})
		case []float64:
			ad := a.Data.([]float64)
			bcastRows(shape, a.Shape, e.Shape, func(oo, ao, bo, n, as, bs int) {
				for i := 0; i < n; i++ {
					od[oo+i] = math.Pow(ad[ao+i*as], ef[bo+i*bs])
				}
			})
		case []int32:
			ad := a.Data.([]int32)
			bcastRows(shape, a.Shape, e.Shape, func(oo, ao, bo, n, as, bs int) {
				for i := 0; i < n; i++ {
					od[oo+i] = int32(math.Pow(float64(ad[ao+i*as]), ef[bo+i*bs]))
				}
			})
		case []int64:
			ad := a.Data.([]int64)
			bcastRows(shape, a.Shape, e.Shape, func(oo, ao, bo, n, as, bs int) {
				for i := 0; i < n; i++ {
					od[oo+i] = int64(math.Pow(float64(ad[ao+i*as]), ef[bo+i*bs]))
				}
			})
		default:
			return fmt.Errorf("Pow on %s is not supported", a.DType)
		}
		out[0] = o
		return nil
	}, nil
}

// Comparisons.

type cmpKind int

const (
	cmpEq cmpKind = iota
	cmpLt
	cmpGt
	cmpLe
	cmpGe
)

func cmpT[T cmp.Ordered](op cmpKind, o, a, b *Tensor) {
	od, ad, bd := o.Data.([]bool), a.Data.([]T), b.Data.([]T)
	bcastRows(o.Shape, a.Shape, b.Shape, func(oo, ao, bo, n, as, bs int) {
		for i := 0; i < n; i++ {
			x, y := ad[ao+i*as], bd[bo+i*bs]
			var r bool
			switch op {
			case cmpEq:
				r = x == y
			case cmpLt:
				r = x < y
			case cmpGt:
				r = x > y
			case cmpLe:
				r = x <= y
			case cmpGe:
				r = x >= y
			}
			od[oo+i] = r
		}
	})
}

func compare(rc *RunContext, op cmpKind, a, b *Tensor) (*Tensor, error) {
	if a.DType != b.DType {
		return nil, fmt.Errorf("input types differ: %s and %s", a.DType, b.DType)
	}
	shape, err := broadcastShapes(a.Shape, b.Shape)
	if err != nil {
		return nil, err
	}
	o := rc.Alloc(Bool, shape)
	switch a.Data.(type) {
	case []float32:
		cmpT[float32](op, o, a, b)
	case []float64:
		cmpT[float64](op, o, a, b)
	case []int8:
		cmpT[int8](op, o, a, b)
	case []int16:
		cmpT[int16](op, o, a, b)
	case []int32:
		cmpT[int32](op, o, a, b)
	case []int64:
		cmpT[int64](op, o, a, b)
	case []uint8:
		cmpT[uint8](op, o, a, b)
	case []uint16:
		cmpT[uint16](op, o, a, b)
	case []uint32:
		cmpT[uint32](op, o, a, b)
	case []uint64:
		cmpT[uint64](op, o, a, b)
	case []string:
		cmpT[string](op, o, a, b)
	case []bool:
		if op != cmpEq {
			return nil, fmt.Errorf("ordering comparison of bool tensors")
		}
		od, ad, bd := o.Data.([]bool), a.Data.([]bool), b.Data.([]bool)
		bcastRows(shape, a.Shape, b.Shape, func(oo, ao, bo, n, as, bs int) {
			for i := 0; i < n; i++ {
				od[oo+i] = ad[ao+i*as] == bd[bo+i*bs]
			}
		})
	default:
		return nil, fmt.Errorf("type %s is not supported", a.DType)
	}
	return o, nil
}

func buildCompare(op cmpKind) func(b *NodeBuilder) (Kernel, error) {
	return func(b *NodeBuilder) (Kernel, error) {
		b.CheckInputs(2, 2)
		return func(rc *RunContext, in, out []*Tensor) error {
			o, err := compare(rc, op, in[0], in[1])
			out[0] = o
			return err
		}, nil
	}
}

type logicKind int

const (
	logicAnd logicKind = iota
	logicOr
	logicXor
)

func buildLogic(op logicKind) func(b *NodeBuilder) (Kernel, error) {
	return func(b *NodeBuilder) (Kernel, error) {
		b.CheckInputs(2, 2)
		return func(rc *RunContext, in, out []*Tensor) error {
			a, c := in[0], in[1]
			ad, ok1 := a.Data.([]bool)
			cd, ok2 := c.Data.([]bool)
			if !ok1 || !ok2 {
				return fmt.Errorf("inputs must be bool, got %s and %s", a.DType, c.DType)
			}
			shape, err := broadcastShapes(a.Shape, c.Shape)
			if err != nil {
				return err
			}
			o := rc.Alloc(Bool, shape)
			od := o.Data.([]bool)
			bcastRows(shape, a.Shape, c.Shape, func(oo, ao, bo, n, as, bs int) {
				for i := 0; i < n; i++ {
					x, y := ad[ao+i*as], cd[bo+i*bs]
					switch op {
					case logicAnd:
						od[oo+i] = x && y
					case logicOr:
						od[oo+i] = x || y
					default:
						od[oo+i] = x != y
					}
				}
			})
			out[0] = o
			return nil
		}, nil
	}
}

func buildNot(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(1, 1)
	return func(rc *RunContext, in, out []*Tensor) error {
		d, ok := in[0].Data.([]bool)
		if !ok {
			return fmt.Errorf("input must be bool, got %s", in[0].DType)
		}
		o := rc.AllocLike(in[0])
		od := o.Data.([]bool)
		for i, v := range d {
			od[i] = !v
		}
		out[0] = o
		return nil
	}, nil
}

func buildBitShift(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(2, 2)
	dir := b.AttrString("direction", "")
	if dir != "LEFT" && dir != "RIGHT" {
		return nil, fmt.Errorf("attribute direction=%q must be LEFT or RIGHT", dir)
	}
	return func(rc *RunContext, in, out []*Tensor) error {
		a, c := in[0], in[1]
		if a.DType != c.DType || !a.DType.IsInt() || a.DType.IsSigned() {
			return fmt.Errorf("BitShift needs two unsigned inputs of one type, got %s and %s", a.DType, c.DType)
		}
		shape, err := broadcastShapes(a.Shape, c.Shape)
		if err != nil {
			return err
		}
		av, _ := a.AsInt64s()
		cv, _ := c.AsInt64s()
		tmp := make([]int64, shapeSize(shape))
		bcastRows(shape, a.Shape, c.Shape, func(oo, ao, bo, n, as, bs int) {
			for i := 0; i < n; i++ {
				x, s := uint64(av[ao+i*as]), uint64(cv[bo+i*bs])
				if dir == "LEFT" {
					tmp[oo+i] = int64(x << s)
				} else {
					tmp[oo+i] = int64(x >> s)
				}
			}
		})
		o := rc.Alloc(a.DType, shape)
		castInt64sInto(o, tmp)
		out[0] = o
		return nil
	}, nil
}

// castInt64sInto stores int64 values into an integer tensor, truncating.
func castInt64sInto(o *Tensor, v []int64) {
	switch d := o.Data.(type) {
	case []int64:
		copy(d, v)
	case []int32:
		for i, x := range v {
			d[i] = int32(x)
		}
	case []int16:
		for i, x := range v {
			d[i] = int16(x)
		}
	case []int8:
		for i, x := range v {
			d[i] = int8(x)
		}
	case []uint64:
		for i, x := range v {
			d[i] = uint64(x)
		}
	case []uint32:
		for i, x := range v {
			d[i] = uint32(x)
		}
	case []uint16:
		for i, x := range v {
			d[i] = uint16(x)
		}
	case []uint8:
		for i, x := range v {
			d[i] = uint8(x)
		}
	}
}

func buildWhere(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(3, 3)
	return func(rc *RunContext, in, out []*Tensor) error {
		c, x, y := in[0], in[1], in[2]
		cd, ok := c.Data.([]bool)
		if !ok {
			return fmt.Errorf("condition must be bool, got %s", c.DType)
		}
		if x.DType != y.DType {
			return fmt.Errorf("X and Y types differ: %s and %s", x.DType, y.DType)
		}
		shape, err := broadcastShapes(c.Shape, x.Shape, y.Shape)
		if err != nil {
			return err
		}
		ci, xi, yi := bcastIndex(shape, c.Shape), bcastIndex(shape, x.Shape), bcastIndex(shape, y.Shape)
		for i := range xi {
			if !cd[ci[i]] {
				xi[i] = -1 - yi[i]
			}
		}
		o := rc.Alloc(x.DType, shape)
		selectData(o.Data, x.Data, y.Data, xi)
		out[0] = o
		return nil
	}, nil
}

// selectData sets dst[i] = x[idx[i]] if idx[i] >= 0, else y[-1-idx[i]].
func selectData(dst, x, y any, idx []int) {
	switch d := dst.(type) {
	case []float32:
		selectT(d, x.([]float32), y.([]float32), idx)
	case []float64:
		selectT(d, x.([]float64), y.([]float64), idx)
	case []int8:
		selectT(d, x.([]int8), y.([]int8), idx)
	case []int16:
		selectT(d, x.([]int16), y.([]int16), idx)
	case []int32:
		selectT(d, x.([]int32), y.([]int32), idx)
	case []int64:
		selectT(d, x.([]int64), y.([]int64), idx)
	case []uint8:
		selectT(d, x.([]uint8), y.([]uint8), idx)
	case []uint16:
		selectT(d, x.([]uint16), y.([]uint16), idx)
	case []uint32:
		selectT(d, x.([]uint32), y.([]uint32), idx)
	case []uint64:
		selectT(d, x.([]uint64), y.([]uint64), idx)
	case []bool:
		selectT(d, x.([]bool), y.([]bool), idx)
	case []string:
		selectT(d, x.([]string), y.([]string), idx)
	}
}

func selectT[T any](dst, x, y []T, idx []int) {
	for i, j := range idx {
		if j >= 0 {
			dst[i] = x[j]
		} else {
			dst[i] = y[-1-j]
		}
	}
}

func init() {
	for _, v := range []int{7} {
		Register(
			OpDef{Name: "Add", Since: v, Build: buildArith(opAdd)},
			OpDef{Name: "Sub", Since: v, Build: buildArith(opSub)},
			OpDef{Name: "Mul", Since: v, Build: buildArith(opMul)},
			OpDef{Name: "Div", Since: v, Build: buildArith(opDiv)},
			OpDef{Name: "Pow", Since: v, Build: buildPow},
			OpDef{Name: "Equal", Since: v, Build: buildCompare(cmpEq)},
			OpDef{Name: "Less", Since: v, Build: buildCompare(cmpLt)},
			OpDef{Name: "Greater", Since: v, Build: buildCompare(cmpGt)},
			OpDef{Name: "And", Since: v, Build: buildLogic(logicAnd)},
			OpDef{Name: "Or", Since: v, Build: buildLogic(logicOr)},
			OpDef{Name: "Xor", Since: v, Build: buildLogic(logicXor)},
		)
	}
	Register(
		OpDef{Name: "LessOrEqual", Since: 12, Build: buildCompare(cmpLe)},
		OpDef{Name: "GreaterOrEqual", Since: 12, Build: buildCompare(cmpGe)},
		OpDef{Name: "Not", Since: 1, Build: buildNot},
		OpDef{Name: "Mod", Since: 10, Build: buildMod},
		OpDef{Name: "BitShift", Since: 11, Build: buildBitShift},
		OpDef{Name: "Where", Since: 9, Build: buildWhere},
		OpDef{Name: "Sum", Since: 6, Build: buildVariadic(opAdd, false)},
		OpDef{Name: "Mean", Since: 6, Build: buildVariadic(opAdd, true)},
		OpDef{Name: "Max", Since: 6, Build: buildVariadic(opMax, false)},
		OpDef{Name: "Min", Since: 6, Build: buildVariadic(opMin, false)},
	)
}
