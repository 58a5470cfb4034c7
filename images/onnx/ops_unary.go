package onnx

import (
	"fmt"
	"math"
)

// Elementwise math and activation functions.

// unaryFloatKernel applies f to every element of a float tensor.
func unaryFloatKernel(f func(float64) float64) Kernel {
	return func(rc *RunContext, in, out []*Tensor) error {
		x := in[0]
		o := rc.AllocLike(x)
		switch d := x.Data.(type) {
		case []float32:
			od := o.Data.([]float32)
			for i, v := range d {
				od[i] = float32(f(float64(v)))
			}
			if x.DType == Float16 {
				roundAllF16(od)
			}
		case []float64:
			od := o.Data.([]float64)
			for i, v := range d {
				od[i] = f(v)
			}
		default:
			return fmt.Errorf("input type %s is not supported, want a float type", x.DType)
		}
		out[0] = o
		return nil
	}
}

func buildUnaryFloat(f func(float64) float64) func(b *NodeBuilder) (Kernel, error) {
	return func(b *NodeBuilder) (Kernel, error) {
		b.CheckInputs(1, 1)
		return unaryFloatKernel(f), nil
	}
}

// unaryNumKernel applies f to floats and g to integers.
func unaryNumKernel(f func(float64) float64, g func(int64) int64) Kernel {
	fk := unaryFloatKernel(f)
	return func(rc *RunContext, in, out []*Tensor) error {
		x := in[0]
		if x.DType.IsFloat() {
			return fk(rc, in, out)
		}
		if !x.DType.IsInt() {
			return fmt.Errorf("input type %s is not supported", x.DType)
		}
		v, _ := x.AsInt64s()
		for i := range v {
			v[i] = g(v[i])
		}
		o := rc.AllocLike(x)
		castInt64sInto(o, v)
		out[0] = o
		return nil
	}
}

func buildUnaryNum(f func(float64) float64, g func(int64) int64) func(b *NodeBuilder) (Kernel, error) {
	return func(b *NodeBuilder) (Kernel, error) {
		b.CheckInputs(1, 1)
		return unaryNumKernel(f, g), nil
	}
}

func sign(x float64) float64 {
	switch {
	case x > 0:
		return 1
	case x < 0:
		return -1
	}
	return x // 0 or NaN
}

func signI(x int64) int64 {
	switch {
	case x > 0:
		return 1
	case x < 0:
		return -1
	}
	return 0
}

func absI(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}

func sigmoid(x float64) float64 {
	if x >= 0 {
		return 1 / (1 + math.Exp(-x))
	}
	e := math.Exp(x)
	return e / (1 + e)
}

// reluF32 sets dst[i] = src[i] if it is above 0, else +0 (NaN and -0
// included, as a v > 0 test gives); dst may be src. It works on the bits
// without a data-dependent branch: reluMask32 keeps exactly the bit
// patterns of +0 up to +Inf.
func reluF32(dst, src []float32) {
	dst = dst[:len(src)]
	for i, v := range src {
		b := math.Float32bits(v)
		dst[i] = math.Float32frombits(b & reluMask32(b))
	}
}

// reluMask32 is all ones if the float32 bits b are +0 to +Inf, else 0:
// those are exactly the patterns 0 to 0x7f800000 (the sign set or a NaN's
// mantissa make it larger), and the 64-bit subtraction is negative exactly
// for them.
func reluMask32(b uint32) uint32 { return uint32((int64(b) - 0x7f800001) >> 63) }

// reluF64 is reluF32 for float64.
func reluF64(dst, src []float64) {
	dst = dst[:len(src)]
	for i, v := range src {
		var keep uint64
		if v > 0 {
			keep = ^uint64(0)
		}
		dst[i] = math.Float64frombits(math.Float64bits(v) & keep)
	}
}

func relu(rc *RunContext, in, out []*Tensor) error {
	x := in[0]
	o := rc.AllocLike(x)
	switch d := x.Data.(type) {
	case []float32:
		reluF32(o.Data.([]float32), d)
	case []float64:
		reluF64(o.Data.([]float64), d)
	default:
		v, err := x.AsInt64s()
		if err != nil {
			return err
		}
		for i := range v {
			v[i] = max(v[i], 0)
		}
		castInt64sInto(o, v)
	}
	out[0] = o
	return nil
}

func sigmoidK(rc *RunContext, in, out []*Tensor) error {
	x := in[0]
	if d, ok := x.Data.([]float32); ok && x.DType == Float {
		o := rc.AllocLike(x)
		od := o.Data.([]float32)
		for i, v := range d {
			od[i] = float32(sigmoid(float64(v)))
		}
		out[0] = o
		return nil
	}
	return unaryFloatKernel(sigmoid)(rc, in, out)
}

func buildFloatParam(f func(b *NodeBuilder) func(float64) float64) func(b *NodeBuilder) (Kernel, error) {
	return func(b *NodeBuilder) (Kernel, error) {
		b.CheckInputs(1, 1)
		return unaryFloatKernel(f(b)), nil
	}
}

func buildIsInf(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(1, 1)
	neg := b.AttrInt("detect_negative", 1) != 0
	pos := b.AttrInt("detect_positive", 1) != 0
	return boolTest(func(x float64) bool {
		return (pos && math.IsInf(x, 1)) || (neg && math.IsInf(x, -1))
	}), nil
}

func boolTest(f func(float64) bool) Kernel {
	return func(rc *RunContext, in, out []*Tensor) error {
		x := in[0]
		o := rc.Alloc(Bool, x.Shape)
		od := o.Data.([]bool)
		switch d := x.Data.(type) {
		case []float32:
			for i, v := range d {
				od[i] = f(float64(v))
			}
		case []float64:
			for i, v := range d {
				od[i] = f(v)
			}
		default:
			return fmt.Errorf("input type %s is not supported, want a float type", x.DType)
		}
		out[0] = o
		return nil
	}
}

func buildPRelu(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(2, 2)
	return func(rc *RunContext, in, out []*Tensor) error {
		x, s := in[0], in[1]
		if x.DType != s.DType {
			return fmt.Errorf("input types differ: %s and %s", x.DType, s.DType)
		}
		shape, err := broadcastShapes(x.Shape, s.Shape)
		if err != nil {
			return err
		}
		if !sameShape(shape, x.Shape) {
			return fmt.Errorf("slope shape %v does not broadcast to X shape %v", s.Shape, x.Shape)
		}
		o := rc.AllocLike(x)
		switch od := o.Data.(type) {
		case []float32:
			xd, sd := x.Data.([]float32), s.Data.([]float32)
			bcastRows(shape, x.Shape, s.Shape, func(oo, ao, bo, n, as, bs int) {
				for i := 0; i < n; i++ {
					v := xd[ao+i*as]
					if v < 0 {
						v *= sd[bo+i*bs]
					}
					od[oo+i] = v
				}
			})
		case []float64:
			xd, sd := x.Data.([]float64), s.Data.([]float64)
			bcastRows(shape, x.Shape, s.Shape, func(oo, ao, bo, n, as, bs int) {
				for i := 0; i < n; i++ {
					v := xd[ao+i*as]
					if v < 0 {
						v *= sd[bo+i*bs]
					}
					od[oo+i] = v
				}
			})
		default:
			xv, err := x.AsInt64s()
			if err != nil {
				return err
			}
			sv, err := s.AsInt64s()
			if err != nil {
				return err
			}
			tmp := make([]int64, len(xv))
			bcastRows(shape, x.Shape, s.Shape, func(oo, ao, bo, n, as, bs int) {
				for i := 0; i < n; i++ {
					v := xv[ao+i*as]
					if v < 0 {
						v *= sv[bo+i*bs]
					}
					tmp[oo+i] = v
				}
			})
			castInt64sInto(o, tmp)
		}
		out[0] = o
		return nil
	}, nil
}

// Clip: attributes before opset 11, optional inputs from 11.
func buildClip(b *NodeBuilder) (Kernel, error) {
	if b.Opset < 11 {
		b.CheckInputs(1, 1)
		lo := float64(b.AttrFloat("min", -math.MaxFloat32))
		hi := float64(b.AttrFloat("max", math.MaxFloat32))
		return unaryFloatKernel(func(x float64) float64 { return math.Min(math.Max(x, lo), hi) }), nil
	}
	b.CheckInputs(1, 3)
	return func(rc *RunContext, in, out []*Tensor) error {
		x := in[0]
		var lo, hi *Tensor
		if len(in) > 1 {
			lo = in[1]
		}
		if len(in) > 2 {
			hi = in[2]
		}
		for _, t := range []*Tensor{lo, hi} {
			if t != nil && (t.Len() != 1 || t.DType != x.DType) {
				return fmt.Errorf("min and max must be scalars of type %s, got %v", x.DType, t)
			}
		}
		o := rc.AllocLike(x)
		switch d := x.Data.(type) {
		case []float32:
			l, h := float32(math.Inf(-1)), float32(math.Inf(1))
			if lo != nil {
				l = lo.Data.([]float32)[0]
			}
			if hi != nil {
				h = hi.Data.([]float32)[0]
			}
			od := o.Data.([]float32)
			for i, v := range d {
				if v < l {
					v = l
				}
				if v > h {
					v = h
				}
				od[i] = v
			}
		case []float64:
			l, h := math.Inf(-1), math.Inf(1)
			if lo != nil {
				l = lo.Data.([]float64)[0]
			}
			if hi != nil {
				h = hi.Data.([]float64)[0]
			}
			od := o.Data.([]float64)
			for i, v := range d {
				od[i] = min(max(v, l), h)
			}
		default:
			v, err := x.AsInt64s()
			if err != nil {
				return err
			}
			l, h := int64(math.MinInt64), int64(math.MaxInt64)
			if lo != nil {
				lv, _ := lo.AsInt64s()
				l = lv[0]
			}
			if hi != nil {
				hv, _ := hi.AsInt64s()
				h = hv[0]
			}
			for i := range v {
				v[i] = min(max(v[i], l), h)
			}
			castInt64sInto(o, v)
		}
		out[0] = o
		return nil
	}, nil
}

func buildShrink(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(1, 1)
	bias := float64(b.AttrFloat("bias", 0))
	lambd := float64(b.AttrFloat("lambd", 0.5))
	f := func(x float64) float64 {
		switch {
		case x < -lambd:
			return x + bias
		case x > lambd:
			return x - bias
		}
		return 0
	}
	return unaryNumKernel(f, func(x int64) int64 { return int64(f(float64(x))) }), nil
}

func buildIdentity(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(1, 1)
	return func(rc *RunContext, in, out []*Tensor) error {
		out[0] = rc.Copy(in[0], nil)
		return nil
	}, nil
}

func init() {
	fl := func(name string, since int, f func(float64) float64) OpDef {
		return OpDef{Name: name, Since: since, Build: buildUnaryFloat(f)}
	}
	Register(
		OpDef{Name: "Abs", Since: 6, Build: buildUnaryNum(math.Abs, absI)},
		OpDef{Name: "Neg", Since: 6, Build: buildUnaryNum(func(x float64) float64 { return -x }, func(x int64) int64 { return -x })},
		OpDef{Name: "Sign", Since: 9, Build: buildUnaryNum(sign, signI)},
		fl("Exp", 6, math.Exp), fl("Log", 6, math.Log), fl("Sqrt", 6, math.Sqrt),
		fl("Reciprocal", 6, func(x float64) float64 { return 1 / x }),
		fl("Floor", 6, math.Floor), fl("Ceil", 6, math.Ceil), fl("Round", 11, math.RoundToEven),
		fl("Sin", 7, math.Sin), fl("Cos", 7, math.Cos), fl("Tan", 7, math.Tan),
		fl("Asin", 7, math.Asin), fl("Acos", 7, math.Acos), fl("Atan", 7, math.Atan),
		fl("Sinh", 9, math.Sinh), fl("Cosh", 9, math.Cosh), fl("Asinh", 9, math.Asinh),
		fl("Acosh", 9, math.Acosh), fl("Atanh", 9, math.Atanh), fl("Erf", 9, math.Erf),
		fl("Tanh", 6, math.Tanh), fl("Softsign", 1, func(x float64) float64 { return x / (1 + math.Abs(x)) }),
		fl("Softplus", 1, func(x float64) float64 {
			if x > 30 {
				return x
			}
			return math.Log1p(math.Exp(x))
		}),
		fl("Mish", 18, func(x float64) float64 { return x * math.Tanh(math.Log1p(math.Exp(x))) }),
		fl("HardSwish", 14, func(x float64) float64 { return x * math.Max(0, math.Min(1, x/6+0.5)) }),
		OpDef{Name: "IsNaN", Since: 9, Build: func(b *NodeBuilder) (Kernel, error) {
			b.CheckInputs(1, 1)
			return boolTest(math.IsNaN), nil
		}},
		OpDef{Name: "IsInf", Since: 10, Build: buildIsInf},
		OpDef{Name: "Relu", Since: 6, Build: func(b *NodeBuilder) (Kernel, error) { b.CheckInputs(1, 1); return relu, nil }},
		OpDef{Name: "Sigmoid", Since: 6, Build: func(b *NodeBuilder) (Kernel, error) { b.CheckInputs(1, 1); return sigmoidK, nil }},
		OpDef{Name: "LeakyRelu", Since: 6, Build: buildFloatParam(func(b *NodeBuilder) func(float64) float64 {
			a := float64(b.AttrFloat("alpha", 0.01))
			return func(x float64) float64 {
				if x < 0 {
					return a * x
				}
				return x
			}
		})},
		OpDef{Name: "Elu", Since: 6, Build: buildFloatParam(func(b *NodeBuilder) func(float64) float64 {
			a := float64(b.AttrFloat("alpha", 1))
			return func(x float64) float64 {
				if x < 0 {
					return a * (math.Exp(x) - 1)
				}
				return x
			}
		})},
		OpDef{Name: "Celu", Since: 12, Build: buildFloatParam(func(b *NodeBuilder) func(float64) float64 {
			a := float64(b.AttrFloat("alpha", 1))
			return func(x float64) float64 { return math.Max(0, x) + math.Min(0, a*(math.Exp(x/a)-1)) }
		})},
		OpDef{Name: "Selu", Since: 6, Build: buildFloatParam(func(b *NodeBuilder) func(float64) float64 {
			a := float64(b.AttrFloat("alpha", 1.67326319217681884765625))
			g := float64(b.AttrFloat("gamma", 1.05070102214813232421875))
			return func(x float64) float64 {
				if x <= 0 {
					return g * (a*math.Exp(x) - a)
				}
				return g * x
			}
		})},
		OpDef{Name: "HardSigmoid", Since: 6, Build: buildFloatParam(func(b *NodeBuilder) func(float64) float64 {
			a := float64(b.AttrFloat("alpha", 0.2))
			bb := float64(b.AttrFloat("beta", 0.5))
			return func(x float64) float64 { return math.Max(0, math.Min(1, a*x+bb)) }
		})},
		OpDef{Name: "ThresholdedRelu", Since: 10, Build: buildFloatParam(func(b *NodeBuilder) func(float64) float64 {
			a := float64(b.AttrFloat("alpha", 1))
			return func(x float64) float64 {
				if x > a {
					return x
				}
				return 0
			}
		})},
		OpDef{Name: "Gelu", Since: 20, Build: buildFloatParam(func(b *NodeBuilder) func(float64) float64 {
			if b.AttrString("approximate", "none") == "tanh" {
				return func(x float64) float64 {
					return 0.5 * x * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(x+0.044715*x*x*x)))
				}
			}
			return func(x float64) float64 { return 0.5 * x * (1 + math.Erf(x/math.Sqrt2)) }
		})},
		OpDef{Name: "PRelu", Since: 7, Build: buildPRelu},
		OpDef{Name: "Clip", Since: 6, Build: buildClip},
		OpDef{Name: "Clip", Since: 11, Build: buildClip},
		OpDef{Name: "Shrink", Since: 9, Build: buildShrink},
		OpDef{Name: "Identity", Since: 1, Build: buildIdentity},
	)
}
