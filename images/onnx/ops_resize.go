package onnx

import (
	"fmt"
	"math"
)

// Resize (opsets 10, 11, 13) and Upsample (opsets 7, 9).

type resizeAttrs struct {
	mode, coord, nearest string
	cubicA               float64
	excludeOutside       bool
	extrapolation        float64
}

// resizeTap is one input index and its weight for one output coordinate.
type resizeTap struct {
	idx int
	w   float64
}

func buildResize(b *NodeBuilder) (Kernel, error) {
	a := resizeAttrs{
		mode:           b.AttrString("mode", "nearest"),
		coord:          b.AttrString("coordinate_transformation_mode", "half_pixel"),
		nearest:        b.AttrString("nearest_mode", "round_prefer_floor"),
		cubicA:         float64(b.AttrFloat("cubic_coeff_a", -0.75)),
		excludeOutside: b.AttrInt("exclude_outside", 0) != 0,
		extrapolation:  float64(b.AttrFloat("extrapolation_value", 0)),
	}
	legacy := b.Node.OpType == "Upsample" || b.Opset < 11
	if legacy {
		if b.Node.OpType == "Upsample" && b.Opset < 9 {
			b.CheckInputs(1, 1)
		} else {
			b.CheckInputs(2, 2)
		}
		a.coord = "asymmetric"
		a.nearest = "simple" // floor when upsampling, ceil when downsampling
		if a.mode == "bilinear" {
			a.mode = "linear"
		}
	} else {
		b.CheckInputs(1, 4)
	}
	switch a.mode {
	case "nearest", "linear", "cubic":
	default:
		return nil, fmt.Errorf("attribute mode=%q is not nearest, linear or cubic", a.mode)
	}
	switch a.coord {
	case "half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "tf_half_pixel_for_nn", "tf_crop_and_resize":
	default:
		return nil, fmt.Errorf("attribute coordinate_transformation_mode=%q is not supported", a.coord)
	}
	switch a.nearest {
	case "round_prefer_floor", "round_prefer_ceil", "floor", "ceil", "simple":
	default:
		return nil, fmt.Errorf("attribute nearest_mode=%q is not supported", a.nearest)
	}
	if b.HasAttr("antialias") && b.AttrInt("antialias", 0) != 0 {
		return nil, Unsupported("antialias")
	}
	attrScales := b.AttrFloats("scales", nil)
	return func(rc *RunContext, in, out []*Tensor) error {
		x := in[0]
		r := len(x.Shape)
		var scales []float64
		var sizes []int64
		var roi []float64
		var err error
		switch {
		case b.Node.OpType == "Upsample" && b.Opset < 9:
			for _, s := range attrScales {
				scales = append(scales, float64(s))
			}
		case legacy:
			if scales, err = in[1].AsFloat64s(); err != nil {
				return err
			}
		default:
			if len(in) > 1 && in[1] != nil && in[1].Len() > 0 {
				if roi, err = in[1].AsFloat64s(); err != nil {
					return err
				}
			}
			if len(in) > 2 && in[2] != nil && in[2].Len() > 0 {
				if scales, err = in[2].AsFloat64s(); err != nil {
					return err
				}
			}
			if len(in) > 3 && in[3] != nil && in[3].Len() > 0 {
				if sizes, err = in[3].AsInt64s(); err != nil {
					return err
				}
			}
		}
		if (scales == nil) == (sizes == nil) {
			return fmt.Errorf("exactly one of scales and sizes must be given")
		}
		oshape := make([]int, r)
		sc := make([]float64, r)
		for i := 0; i < r; i++ {
			if sizes != nil {
				if len(sizes) != r {
					return fmt.Errorf("sizes has %d entries for rank %d", len(sizes), r)
				}
				d, err := toDim(sizes[i])
				if err != nil {
					return fmt.Errorf("sizes: %w", err)
				}
				oshape[i] = d
				sc[i] = float64(sizes[i]) / float64(x.Shape[i])
			} else {
				if len(scales) != r {
					return fmt.Errorf("scales has %d entries for rank %d", len(scales), r)
				}
				if scales[i] <= 0 {
					return fmt.Errorf("scales %v has a non-positive entry", scales)
				}
				sc[i] = scales[i]
				oshape[i] = int(math.Floor(float64(x.Shape[i]) * scales[i]))
			}
			if oshape[i] < 0 || oshape[i] > 1<<24 {
				return fmt.Errorf("output dimension %d is out of range", oshape[i])
			}
		}
		if a.coord == "tf_crop_and_resize" && len(roi) != 2*r {
			return fmt.Errorf("roi has %d entries, want %d", len(roi), 2*r)
		}
		taps := make([][][]resizeTap, r)
		extrap := make([][]bool, r)
		for d := 0; d < r; d++ {
			taps[d], extrap[d] = resizeAxis(a, x.Shape[d], oshape[d], sc[d], roi, d, r)
		}
		xv, err := x.AsFloat64s()
		if err != nil {
			return err
		}
		st := stridesOf(x.Shape)
		n := checkAlloc(oshape)
		res := make([]float64, n)
		ctr := make([]int, r)
		for p := 0; p < n; p++ {
			ext := false
			for d := 0; d < r; d++ {
				if extrap[d][ctr[d]] {
					ext = true
				}
			}
			if ext {
				res[p] = a.extrapolation
			} else {
				res[p] = resizeSum(xv, st, taps, ctr, 0, 0, 1)
			}
			for d := r - 1; d >= 0; d-- {
				ctr[d]++
				if ctr[d] < oshape[d] {
					break
				}
				ctr[d] = 0
			}
		}
		o := rc.Alloc(x.DType, oshape)
		if x.DType.IsInt() {
			for i, v := range res {
				res[i] = math.Round(v)
			}
		}
		storeFloat64s(o, res)
		out[0] = o
		return nil
	}, nil
}

func resizeSum(xv []float64, st []int, taps [][][]resizeTap, ctr []int, d, off int, w float64) float64 {
	if d == len(st) {
		return xv[off] * w
	}
	var s float64
	for _, t := range taps[d][ctr[d]] {
		s += resizeSum(xv, st, taps, ctr, d+1, off+t.idx*st[d], w*t.w)
	}
	return s
}

func resizeAxis(a resizeAttrs, in, out int, scale float64, roi []float64, d, r int) ([][]resizeTap, []bool) {
	taps := make([][]resizeTap, out)
	extrap := make([]bool, out)
	L := float64(in) * scale // the un-rounded output length the reference uses
	for j := 0; j < out; j++ {
		x := float64(j)
		var xo float64
		switch a.coord {
		case "half_pixel":
			xo = (x+0.5)/scale - 0.5
		case "pytorch_half_pixel":
			if out > 1 {
				xo = (x+0.5)/scale - 0.5
			}
		case "align_corners":
			if out > 1 {
				xo = x * float64(in-1) / (L - 1)
			}
		case "asymmetric":
			xo = x / scale
		case "tf_half_pixel_for_nn":
			xo = (x + 0.5) / scale
		case "tf_crop_and_resize":
			s, e := roi[d], roi[d+r]
			if out > 1 {
				xo = s*float64(in-1) + x*(e-s)*float64(in-1)/(L-1)
			} else {
				xo = 0.5 * (s + e) * float64(in-1)
			}
			if xo < 0 || xo > float64(in-1) {
				extrap[j] = true
				continue
			}
		}
		if in == 1 && a.mode != "nearest" {
			taps[j] = []resizeTap{{0, 1}}
			continue
		}
		switch a.mode {
		case "nearest":
			var k float64
			switch a.nearest {
			case "round_prefer_floor":
				if xo-math.Floor(xo) == 0.5 {
					k = math.Floor(xo)
				} else {
					k = math.Round(xo)
				}
			case "round_prefer_ceil":
				if xo-math.Floor(xo) == 0.5 {
					k = math.Ceil(xo)
				} else {
					k = math.Round(xo)
				}
			case "floor":
				k = math.Floor(xo)
			case "simple":
				if scale < 1 {
					k = math.Ceil(xo)
				} else {
					k = math.Floor(xo)
				}
			case "ceil":
				k = math.Ceil(xo)
			}
			ki := min(max(int(k), 0), in-1)
			taps[j] = []resizeTap{{ki, 1}}
		default:
			fl := math.Floor(xo)
			ratio := xo - fl
			if ratio == 0 {
				ratio = 1
			}
			var coeffs []float64
			if a.mode == "linear" {
				coeffs = []float64{1 - ratio, ratio}
			} else {
				A := a.cubicA
				r1 := ratio + 1
				r2 := 1 - ratio
				r3 := 2 - ratio
				coeffs = []float64{
					((A*r1-5*A)*r1+8*A)*r1 - 4*A,
					((A+2)*ratio-(A+3))*ratio*ratio + 1,
					((A+2)*r2-(A+3))*r2*r2 + 1,
					((A*r3-5*A)*r3+8*A)*r3 - 4*A,
				}
			}
			nn := len(coeffs)
			// The nn nearest integer positions around xo (ties to the smaller).
			start := int(fl) - nn/2 + 1
			if xo == fl {
				start = int(fl) - nn/2
			}
			idx := make([]int, nn)
			for i := range idx {
				idx[i] = start + i
			}
			if a.excludeOutside {
				var s float64
				for i, k := range idx {
					if k < 0 || k >= in {
						coeffs[i] = 0
					}
					s += coeffs[i]
				}
				if s != 0 {
					for i := range coeffs {
						coeffs[i] /= s
					}
				}
			}
			var ts []resizeTap
			for i, k := range idx {
				if coeffs[i] == 0 {
					continue
				}
				ts = append(ts, resizeTap{min(max(k, 0), in-1), coeffs[i]})
			}
			taps[j] = ts
		}
	}
	return taps, extrap
}

func init() {
	Register(
		OpDef{Name: "Resize", Since: 10, Build: buildResize},
		OpDef{Name: "Resize", Since: 11, Build: buildResize},
		OpDef{Name: "Upsample", Since: 7, Build: buildResize},
		OpDef{Name: "Upsample", Since: 9, Build: buildResize},
	)
}
