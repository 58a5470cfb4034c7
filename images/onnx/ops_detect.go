package onnx

import (
	"fmt"
	"math"
	"sort"
)

// NonMaxSuppression.

func buildNMS(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(2, 5)
	center := b.AttrInt("center_point_box", 0)
	if center != 0 && center != 1 {
		return nil, fmt.Errorf("attribute center_point_box=%d must be 0 or 1", center)
	}
	return func(rc *RunContext, in, out []*Tensor) error {
		boxes, scores := in[0], in[1]
		if len(boxes.Shape) != 3 || boxes.Shape[2] != 4 || len(scores.Shape) != 3 || scores.Shape[0] != boxes.Shape[0] || scores.Shape[2] != boxes.Shape[1] {
			return fmt.Errorf("boxes shape %v and scores shape %v do not match [B,N,4] and [B,C,N]", boxes.Shape, scores.Shape)
		}
		maxOut := int64(0)
		if t := optIn(in, 2); t != nil && t.Len() > 0 {
			v, err := t.AsInt64s()
			if err != nil {
				return err
			}
			maxOut = v[0]
		}
		iou := 0.0
		if t := optIn(in, 3); t != nil && t.Len() > 0 {
			v, err := t.AsFloat64s()
			if err != nil {
				return err
			}
			iou = v[0]
		}
		scoreTh := math.Inf(-1)
		if t := optIn(in, 4); t != nil && t.Len() > 0 {
			v, err := t.AsFloat64s()
			if err != nil {
				return err
			}
			scoreTh = v[0]
		}
		bv, err := boxes.AsFloat64s()
		if err != nil {
			return err
		}
		sv, err := scores.AsFloat64s()
		if err != nil {
			return err
		}
		B, N, C := boxes.Shape[0], boxes.Shape[1], scores.Shape[1]
		corners := func(bi, i int) (y1, x1, y2, x2 float64) {
			p := bv[(bi*N+i)*4:]
			if center == 1 {
				xc, yc, w, h := p[0], p[1], p[2], p[3]
				return yc - h/2, xc - w/2, yc + h/2, xc + w/2
			}
			return math.Min(p[0], p[2]), math.Min(p[1], p[3]), math.Max(p[0], p[2]), math.Max(p[1], p[3])
		}
		overlap := func(bi, i, j int) float64 {
			ay1, ax1, ay2, ax2 := corners(bi, i)
			by1, bx1, by2, bx2 := corners(bi, j)
			ih := math.Max(0, math.Min(ay2, by2)-math.Max(ay1, by1))
			iw := math.Max(0, math.Min(ax2, bx2)-math.Max(ax1, bx1))
			inter := ih * iw
			union := (ay2-ay1)*(ax2-ax1) + (by2-by1)*(bx2-bx1) - inter
			if union <= 0 {
				return 0
			}
			return inter / union
		}
		var sel []int64
		for bi := 0; bi < B; bi++ {
			for c := 0; c < C; c++ {
				sc := sv[(bi*C+c)*N : (bi*C+c+1)*N]
				var cand []int
				for i, s := range sc {
					if s > scoreTh {
						cand = append(cand, i)
					}
				}
				sort.SliceStable(cand, func(p, q int) bool { return sc[cand[p]] > sc[cand[q]] })
				var kept []int
				for _, i := range cand {
					if int64(len(kept)) >= maxOut {
						break
					}
					ok := true
					for _, j := range kept {
						if overlap(bi, i, j) > iou {
							ok = false
							break
						}
					}
					if ok {
						kept = append(kept, i)
						sel = append(sel, int64(bi), int64(c), int64(i))
					}
				}
			}
		}
		o := rc.Alloc(Int64, []int{len(sel) / 3, 3})
		copy(o.Data.([]int64), sel)
		out[0] = o
		return nil
	}, nil
}

func buildRoiAlign(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(3, 3)
	coord := "output_half_pixel"
	if b.Opset >= 16 {
		coord = b.AttrString("coordinate_transformation_mode", "half_pixel")
	}
	if coord != "half_pixel" && coord != "output_half_pixel" {
		return nil, fmt.Errorf("attribute coordinate_transformation_mode=%q is not half_pixel or output_half_pixel", coord)
	}
	mode := b.AttrString("mode", "avg")
	if mode != "avg" && mode != "max" {
		return nil, fmt.Errorf("attribute mode=%q is not avg or max", mode)
	}
	oh, ow := int(b.AttrInt("output_height", 1)), int(b.AttrInt("output_width", 1))
	ratio := int(b.AttrInt("sampling_ratio", 0))
	scale := float64(b.AttrFloat("spatial_scale", 1))
	if oh <= 0 || ow <= 0 || ratio < 0 {
		return nil, fmt.Errorf("attributes output_height=%d, output_width=%d, sampling_ratio=%d are out of range", oh, ow, ratio)
	}
	return func(rc *RunContext, in, out []*Tensor) error {
		x, rois, bi := in[0], in[1], in[2]
		if len(x.Shape) != 4 || len(rois.Shape) != 2 || rois.Shape[1] != 4 || bi.Len() != rois.Shape[0] {
			return fmt.Errorf("X shape %v, rois shape %v and batch_indices shape %v do not match", x.Shape, rois.Shape, bi.Shape)
		}
		xv, err := x.AsFloat64s()
		if err != nil {
			return err
		}
		rv, err := rois.AsFloat64s()
		if err != nil {
			return err
		}
		bv, err := bi.AsInt64s()
		if err != nil {
			return err
		}
		for i, v := range rv {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return fmt.Errorf("rois[%d] is %v, want a finite coordinate", i, v)
			}
		}
		N, C, H, W := x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3]
		R := rois.Shape[0]
		oshape := []int{R, C, oh, ow}
		res := make([]float64, checkAlloc(oshape))
		off := 0.0
		if coord == "half_pixel" {
			off = 0.5
		}
		for r := 0; r < R; r++ {
			n := bv[r]
			if n < 0 || n >= int64(N) {
				return fmt.Errorf("batch index %d is out of range for %d images", n, N)
			}
			x1, y1 := rv[r*4]*scale-off, rv[r*4+1]*scale-off
			x2, y2 := rv[r*4+2]*scale-off, rv[r*4+3]*scale-off
			rw, rh := x2-x1, y2-y1
			if coord == "output_half_pixel" {
				rw, rh = math.Max(rw, 1), math.Max(rh, 1)
			}
			bh, bw := rh/float64(oh), rw/float64(ow)
			gh, gw := ratio, ratio
			if ratio == 0 {
				gh, gw = int(math.Ceil(rh/float64(oh))), int(math.Ceil(rw/float64(ow)))
			}
			if gh > 1<<12 || gw > 1<<12 {
				return fmt.Errorf("region of interest %d is too large", r)
			}
			count := float64(max(gh*gw, 1))
			for c := 0; c < C; c++ {
				img := xv[(int(n)*C+c)*H*W : (int(n)*C+c+1)*H*W]
				for ph := 0; ph < oh; ph++ {
					for pw := 0; pw < ow; pw++ {
						acc := 0.0
						mx := math.Inf(-1)
						for iy := 0; iy < gh; iy++ {
							y := y1 + float64(ph)*bh + (float64(iy)+0.5)*bh/float64(gh)
							for ix := 0; ix < gw; ix++ {
								xx := x1 + float64(pw)*bw + (float64(ix)+0.5)*bw/float64(gw)
								if y < -1 || y > float64(H) || xx < -1 || xx > float64(W) {
									mx = math.Max(mx, 0)
									continue
								}
								yy, xc := math.Max(y, 0), math.Max(xx, 0)
								yl, xl := int(yy), int(xc)
								yh, xh := yl+1, xl+1
								if yl >= H-1 {
									yl, yh, yy = H-1, H-1, float64(H-1)
								}
								if xl >= W-1 {
									xl, xh, xc = W-1, W-1, float64(W-1)
								}
								ly, lx := yy-float64(yl), xc-float64(xl)
								hy, hx := 1-ly, 1-lx
								v1, v2 := hy*hx*img[yl*W+xl], hy*lx*img[yl*W+xh]
								v3, v4 := ly*hx*img[yh*W+xl], ly*lx*img[yh*W+xh]
								if mode == "avg" {
									acc += v1 + v2 + v3 + v4
								} else {
									mx = math.Max(mx, math.Max(math.Max(v1, v2), math.Max(v3, v4)))
								}
							}
						}
						p := ((r*C+c)*oh+ph)*ow + pw
						if mode == "avg" {
							res[p] = acc / count
						} else if !math.IsInf(mx, -1) {
							res[p] = mx
						}
					}
				}
			}
		}
		o := rc.Alloc(x.DType, oshape)
		storeFloat64s(o, res)
		out[0] = o
		return nil
	}, nil
}

func init() {
	Register(
		OpDef{Name: "NonMaxSuppression", Since: 10, Build: buildNMS},
		OpDef{Name: "RoiAlign", Since: 10, Build: buildRoiAlign},
	)
}
