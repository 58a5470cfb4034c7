package onnx

import (
	"fmt"
	"math"
)

// NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss (inference of the
// loss value, as exported by training frameworks).

func lossAttrs(b *NodeBuilder) (reduction string, ignore int64, hasIgnore bool) {
	reduction = b.AttrString("reduction", "mean")
	if reduction != "none" && reduction != "sum" && reduction != "mean" {
		b.Errorf("attribute reduction=%q is not none, sum or mean", reduction)
	}
	return reduction, b.AttrInt("ignore_index", 0), b.HasAttr("ignore_index")
}

// nllLoss computes the loss from log-probabilities lp [N,C,d...].
func nllLoss(rc *RunContext, lp []float64, shape []int, dt DType, target *Tensor, weight *Tensor, reduction string, ignore int64, hasIgnore bool) (*Tensor, error) {
	if len(shape) < 2 {
		return nil, fmt.Errorf("input shape %v must have rank >= 2", shape)
	}
	N, C := shape[0], shape[1]
	inner := shapeSize(shape[2:])
	tshape := append([]int{N}, shape[2:]...)
	if !sameShape(target.Shape, tshape) {
		return nil, fmt.Errorf("target shape %v, want %v", target.Shape, tshape)
	}
	tv, err := target.AsInt64s()
	if err != nil {
		return nil, err
	}
	var w []float64
	if weight != nil {
		if w, err = weight.AsFloat64s(); err != nil {
			return nil, err
		}
		if len(w) != C {
			return nil, fmt.Errorf("weight has %d elements, want %d", len(w), C)
		}
	}
	loss := make([]float64, N*inner)
	var wsum float64
	for n := 0; n < N; n++ {
		for d := 0; d < inner; d++ {
			t := tv[n*inner+d]
			if hasIgnore && t == ignore {
				continue
			}
			if t < 0 || t >= int64(C) {
				return nil, fmt.Errorf("target %d is out of range for %d classes", t, C)
			}
			wt := 1.0
			if w != nil {
				wt = w[t]
			}
			loss[n*inner+d] = -lp[(n*C+int(t))*inner+d] * wt
			wsum += wt
		}
	}
	if reduction == "none" {
		o := rc.Alloc(dt, tshape)
		storeFloat64s(o, loss)
		return o, nil
	}
	var s float64
	for _, v := range loss {
		s += v
	}
	if reduction == "mean" {
		if wsum == 0 {
			s = math.NaN()
			if len(loss) > 0 && w == nil {
				s = 0
			}
		} else {
			s /= wsum
		}
	}
	o := rc.Alloc(dt, []int{})
	storeFloat64s(o, []float64{s})
	return o, nil
}

func buildNLLLoss(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(2, 3)
	red, ignore, hasIgnore := lossAttrs(b)
	return func(rc *RunContext, in, out []*Tensor) error {
		x := in[0]
		xv, err := x.AsFloat64s()
		if err != nil {
			return err
		}
		var w *Tensor
		if len(in) > 2 {
			w = in[2]
		}
		o, err := nllLoss(rc, xv, x.Shape, x.DType, in[1], w, red, ignore, hasIgnore)
		out[0] = o
		return err
	}, nil
}

func buildSCELoss(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(2, 3)
	red, ignore, hasIgnore := lossAttrs(b)
	return func(rc *RunContext, in, out []*Tensor) error {
		x := in[0]
		if len(x.Shape) < 2 {
			return fmt.Errorf("scores shape %v must have rank >= 2", x.Shape)
		}
		xv, err := x.AsFloat64s()
		if err != nil {
			return err
		}
		N, C := x.Shape[0], x.Shape[1]
		inner := shapeSize(x.Shape[2:])
		lp := make([]float64, len(xv))
		for n := 0; n < N; n++ {
			for d := 0; d < inner; d++ {
				mx := math.Inf(-1)
				for c := 0; c < C; c++ {
					mx = math.Max(mx, xv[(n*C+c)*inner+d])
				}
				var s float64
				for c := 0; c < C; c++ {
					s += math.Exp(xv[(n*C+c)*inner+d] - mx)
				}
				ls := math.Log(s)
				for c := 0; c < C; c++ {
					p := (n*C+c)*inner + d
					lp[p] = xv[p] - mx - ls
				}
			}
		}
		var w *Tensor
		if len(in) > 2 {
			w = in[2]
		}
		o, err := nllLoss(rc, lp, x.Shape, x.DType, in[1], w, red, ignore, hasIgnore)
		if err != nil {
			return err
		}
		out[0] = o
		if len(out) > 1 {
			t := rc.AllocLike(x)
			storeFloat64s(t, lp)
			out[1] = t
		}
		return nil
	}, nil
}

func init() {
	Register(
		OpDef{Name: "NegativeLogLikelihoodLoss", Since: 12, Build: buildNLLLoss},
		OpDef{Name: "SoftmaxCrossEntropyLoss", Since: 12, Build: buildSCELoss},
	)
}
