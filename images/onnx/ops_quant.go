package onnx

import (
	"fmt"
	"math"
)

// Quantization: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear,
// MatMulInteger, QLinearMatMul, ConvInteger, QLinearConv.

func qRange(dt DType) (float64, float64, error) {
	switch dt {
	case Uint8:
		return 0, 255, nil
	case Int8:
		return -128, 127, nil
	case Uint16:
		return 0, 65535, nil
	case Int16:
		return -32768, 32767, nil
	case Int32:
		return math.MinInt32, math.MaxInt32, nil
	}
	return 0, 0, fmt.Errorf("quantized type %s is not supported", dt)
}

// perAxis expands a scalar or 1-D per-axis parameter to one value per element of shape.
func perAxis(p []float64, pshape []int, shape []int, axis int64) ([]int, error) {
	n := shapeSize(shape)
	idx := make([]int, n)
	if len(p) == 1 {
		return idx, nil
	}
	if len(pshape) != 1 {
		return nil, fmt.Errorf("scale/zero point shape %v must be a scalar or 1-D", pshape)
	}
	ax, err := normAxis(axis, len(shape))
	if err != nil {
		return nil, err
	}
	if shape[ax] != len(p) {
		return nil, fmt.Errorf("scale has %d elements, axis %d has %d", len(p), ax, shape[ax])
	}
	inner := shapeSize(shape[ax+1:])
	for i := range idx {
		idx[i] = (i / inner) % shape[ax]
	}
	return idx, nil
}

func buildQuantizeLinear(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(2, 3)
	axis := b.AttrInt("axis", 1)
	saturate := b.AttrInt("saturate", 1)
	_ = saturate
	return func(rc *RunContext, in, out []*Tensor) error {
		x := in[0]
		xv, err := x.AsFloat64s()
		if err != nil {
			return err
		}
		sc, err := in[1].AsFloat64s()
		if err != nil {
			return err
		}
		dt := Uint8
		var zp []float64
		if len(in) > 2 && in[2] != nil {
			dt = in[2].DType
			if zp, err = in[2].AsFloat64s(); err != nil {
				return err
			}
		}
		lo, hi, err := qRange(dt)
		if err != nil {
			return err
		}
		idx, err := perAxis(sc, in[1].Shape, x.Shape, axis)
		if err != nil {
			return err
		}
		res := make([]float64, len(xv))
		f32 := x.DType != Double
		for i, v := range xv {
			var q float64
			if f32 {
				q = math.RoundToEven(float64(float32(v) / float32(sc[idx[i]])))
			} else {
				q = math.RoundToEven(v / sc[idx[i]])
			}
			if zp != nil {
				q += zp[idx[i]]
			}
			res[i] = math.Min(math.Max(q, lo), hi)
		}
		o := rc.Alloc(dt, x.Shape)
		storeFloat64s(o, res)
		out[0] = o
		return nil
	}, nil
}

func buildDequantizeLinear(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(2, 3)
	axis := b.AttrInt("axis", 1)
	return func(rc *RunContext, in, out []*Tensor) error {
		x := in[0]
		xv, err := x.AsFloat64s()
		if err != nil {
			return err
		}
		sc, err := in[1].AsFloat64s()
		if err != nil {
			return err
		}
		var zp []float64
		if len(in) > 2 && in[2] != nil {
			if zp, err = in[2].AsFloat64s(); err != nil {
				return err
			}
		}
		idx, err := perAxis(sc, in[1].Shape, x.Shape, axis)
		if err != nil {
			return err
		}
		res := make([]float64, len(xv))
		for i, v := range xv {
			if zp != nil {
				v -= zp[idx[i]]
			}
			res[i] = v * sc[idx[i]]
		}
		o := rc.Alloc(in[1].DType, x.Shape)
		storeFloat64s(o, res)
		out[0] = o
		return nil
	}, nil
}

func buildDynamicQuantizeLinear(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(1, 1)
	return func(rc *RunContext, in, out []*Tensor) error {
		x := in[0]
		xv, err := x.AsFloat64s()
		if err != nil {
			return err
		}
		mn, mx := 0.0, 0.0
		for _, v := range xv {
			mn, mx = math.Min(mn, v), math.Max(mx, v)
		}
		// The reference computes in float32.
		scale := float64(float32(mx-mn) / 255)
		zp := 0.0
		if scale != 0 {
			zp = math.Min(math.Max(math.RoundToEven(float64(0-float32(mn)/float32(scale))), 0), 255)
		}
		res := make([]float64, len(xv))
		for i, v := range xv {
			q := zp
			if scale != 0 {
				q = math.RoundToEven(float64(float32(v)/float32(scale))) + zp
			}
			res[i] = math.Min(math.Max(q, 0), 255)
		}
		y := rc.Alloc(Uint8, x.Shape)
		storeFloat64s(y, res)
		s := rc.Alloc(Float, []int{})
		s.Data.([]float32)[0] = float32(scale)
		z := rc.Alloc(Uint8, []int{})
		z.Data.([]uint8)[0] = uint8(zp)
		out[0], out[1], out[2] = y, s, z
		return nil
	}, nil
}

// zeroPointed returns t's values minus a zero point that is a scalar or
// (for MatMul) per row (a, axis 0 of the last two dims) or per column (b).
func minusZeroPoint(t, zp *Tensor, perRow bool) ([]float64, error) {
	v, err := t.AsFloat64s()
	if err != nil {
		return nil, err
	}
	if zp == nil {
		return v, nil
	}
	z, err := zp.AsFloat64s()
	if err != nil {
		return nil, err
	}
	if len(z) == 1 {
		for i := range v {
			v[i] -= z[0]
		}
		return v, nil
	}
	r := len(t.Shape)
	if r < 2 {
		return nil, fmt.Errorf("zero point with %d elements for a 1-D input", len(z))
	}
	rows, cols := t.Shape[r-2], t.Shape[r-1]
	for i := range v {
		var k int
		if perRow {
			k = (i / cols) % rows
		} else {
			k = i % cols
		}
		if k >= len(z) {
			return nil, fmt.Errorf("zero point has %d elements, too few for shape %v", len(z), t.Shape)
		}
		v[i] -= z[k]
	}
	return v, nil
}

func matmulF64(rc *RunContext, a []float64, as []int, b []float64, bs []int) (*Tensor, error) {
	ta := &Tensor{DType: Double, Shape: as, Data: a}
	tb := &Tensor{DType: Double, Shape: bs, Data: b}
	return matmul(rc, ta, tb)
}

func optIn(in []*Tensor, i int) *Tensor {
	if i < len(in) {
		return in[i]
	}
	return nil
}

func buildMatMulInteger(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(2, 4)
	return func(rc *RunContext, in, out []*Tensor) error {
		a, err := minusZeroPoint(in[0], optIn(in, 2), true)
		if err != nil {
			return err
		}
		bb, err := minusZeroPoint(in[1], optIn(in, 3), false)
		if err != nil {
			return err
		}
		p, err := matmulF64(rc, a, in[0].Shape, bb, in[1].Shape)
		if err != nil {
			return err
		}
		o := rc.Alloc(Int32, p.Shape)
		storeFloat64s(o, p.Data.([]float64))
		out[0] = o
		return nil
	}, nil
}

func requantize(rc *RunContext, v []float64, shape []int, scale float64, yScale, yZp *Tensor) (*Tensor, error) {
	ys, err := yScale.AsFloat64s()
	if err != nil || len(ys) != 1 {
		return nil, fmt.Errorf("y_scale must be a scalar")
	}
	zp := 0.0
	dt := Uint8
	if yZp != nil {
		z, err := yZp.AsFloat64s()
		if err != nil || len(z) != 1 {
			return nil, fmt.Errorf("y_zero_point must be a scalar")
		}
		zp, dt = z[0], yZp.DType
	}
	lo, hi, err := qRange(dt)
	if err != nil {
		return nil, err
	}
	res := make([]float64, len(v))
	for i, x := range v {
		res[i] = math.Min(math.Max(math.RoundToEven(x*scale/ys[0])+zp, lo), hi)
	}
	o := rc.Alloc(dt, shape)
	storeFloat64s(o, res)
	return o, nil
}

func scalarOf(t *Tensor, name string) (float64, error) {
	v, err := t.AsFloat64s()
	if err != nil || len(v) != 1 {
		return 0, fmt.Errorf("%s must be a scalar", name)
	}
	return v[0], nil
}

func buildQLinearMatMul(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(8, 8)
	return func(rc *RunContext, in, out []*Tensor) error {
		as, err := scalarOf(in[1], "a_scale")
		if err != nil {
			return err
		}
		bs, err := scalarOf(in[4], "b_scale")
		if err != nil {
			return err
		}
		a, err := minusZeroPoint(in[0], in[2], true)
		if err != nil {
			return err
		}
		bb, err := minusZeroPoint(in[3], in[5], false)
		if err != nil {
			return err
		}
		p, err := matmulF64(rc, a, in[0].Shape, bb, in[3].Shape)
		if err != nil {
			return err
		}
		o, err := requantize(rc, p.Data.([]float64), p.Shape, as*bs, in[6], in[7])
		out[0] = o
		return err
	}, nil
}

// zpPerChannel subtracts a scalar or per-output-channel (axis 0) zero point.
func zpPerChannel(t, zp *Tensor) ([]float64, error) {
	v, err := t.AsFloat64s()
	if err != nil {
		return nil, err
	}
	if zp == nil {
		return v, nil
	}
	z, err := zp.AsFloat64s()
	if err != nil {
		return nil, err
	}
	per := len(v) / max(t.Shape[0], 1)
	for i := range v {
		k := 0
		if len(z) > 1 {
			k = i / per
			if k >= len(z) {
				return nil, fmt.Errorf("zero point has %d elements, want %d", len(z), t.Shape[0])
			}
		}
		v[i] -= z[k]
	}
	return v, nil
}

func buildConvInteger(qlinear bool) func(b *NodeBuilder) (Kernel, error) {
	return func(b *NodeBuilder) (Kernel, error) {
		if qlinear {
			b.CheckInputs(8, 9)
		} else {
			b.CheckInputs(2, 4)
		}
		wa := readWindowAttrs(b, false)
		group := int(b.AttrInt("group", 1))
		if group <= 0 {
			return nil, fmt.Errorf("attribute group=%d must be positive", group)
		}
		return func(rc *RunContext, in, out []*Tensor) error {
			xi, wi := 0, 1
			var xzp, wzp *Tensor
			if qlinear {
				xi, wi = 0, 3
				xzp, wzp = in[2], in[5]
			} else {
				xzp, wzp = optIn(in, 2), optIn(in, 3)
			}
			x, w := in[xi], in[wi]
			xv, err := x.AsFloat64s()
			if err != nil {
				return err
			}
			if xzp != nil {
				z, err := scalarOf(xzp, "x_zero_point")
				if err != nil {
					return err
				}
				for i := range xv {
					xv[i] -= z
				}
			}
			wv, err := zpPerChannel(w, wzp)
			if err != nil {
				return err
			}
			tx := &Tensor{DType: Double, Shape: x.Shape, Data: xv}
			tw := &Tensor{DType: Double, Shape: w.Shape, Data: wv}
			o, err := convAny(rc, tx, tw, nil, wa, group)
			if err != nil {
				return err
			}
			ov := o.Data.([]float64)
			if !qlinear {
				r := rc.Alloc(Int32, o.Shape)
				storeFloat64s(r, ov)
				out[0] = r
				return nil
			}
			xs, err := scalarOf(in[1], "x_scale")
			if err != nil {
				return err
			}
			ws, err := in[4].AsFloat64s()
			if err != nil {
				return err
			}
			M := o.Shape[1]
			per := len(ov) / max(o.Shape[0]*M, 1)
			var bias []float64
			if len(in) > 8 && in[8] != nil {
				if bias, err = in[8].AsFloat64s(); err != nil {
					return err
				}
			}
			ysc, err := scalarOf(in[6], "y_scale")
			if err != nil {
				return err
			}
			// Fold per-channel scales into the values, then requantize with scale 1.
			for i := range ov {
				m := (i / per) % M
				v := ov[i]
				if bias != nil {
					v += bias[m]
				}
				s := ws[0]
				if len(ws) > 1 {
					s = ws[m]
				}
				ov[i] = v * xs * s / ysc
			}
			one := &Tensor{DType: Float, Shape: []int{}, Data: []float32{1}}
			r, err := requantize(rc, ov, o.Shape, 1, one, in[7])
			out[0] = r
			return err
		}, nil
	}
}

func init() {
	Register(
		OpDef{Name: "QuantizeLinear", Since: 10, Build: buildQuantizeLinear},
		OpDef{Name: "DequantizeLinear", Since: 10, Build: buildDequantizeLinear},
		OpDef{Name: "DynamicQuantizeLinear", Since: 11, Build: buildDynamicQuantizeLinear},
		OpDef{Name: "MatMulInteger", Since: 10, Build: buildMatMulInteger},
		OpDef{Name: "QLinearMatMul", Since: 10, Build: buildQLinearMatMul},
		OpDef{Name: "ConvInteger", Since: 10, Build: buildConvInteger(false)},
		OpDef{Name: "QLinearConv", Since: 10, Build: buildConvInteger(true)},
	)
}
