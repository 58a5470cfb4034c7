package onnx

import (
	"fmt"
	"math"
)

// Convolution, pooling and normalization.

// geom is the spatial geometry of a convolution or pooling window.
type geom struct {
	in, k, out, pb, pe, s, d []int
}

type windowAttrs struct {
	autoPad   string
	kernel    []int64
	pads      []int64
	strides   []int64
	dilations []int64
	ceil      bool
}

func readWindowAttrs(b *NodeBuilder, needKernel bool) windowAttrs {
	w := windowAttrs{
		autoPad:   b.AttrString("auto_pad", "NOTSET"),
		kernel:    b.AttrInts("kernel_shape", nil),
		pads:      b.AttrInts("pads", nil),
		strides:   b.AttrInts("strides", nil),
		dilations: b.AttrInts("dilations", nil),
		ceil:      b.AttrInt("ceil_mode", 0) != 0,
	}
	switch w.autoPad {
	case "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID":
	default:
		b.Errorf("attribute auto_pad=%q is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID", w.autoPad)
	}
	if needKernel && len(w.kernel) == 0 {
		b.Errorf("attribute kernel_shape is required")
	}
	for _, v := range w.kernel {
		if v <= 0 {
			b.Errorf("attribute kernel_shape %v has a non-positive entry", w.kernel)
		}
	}
	for _, v := range w.strides {
		if v <= 0 {
			b.Errorf("attribute strides %v has a non-positive entry", w.strides)
		}
	}
	for _, v := range w.dilations {
		if v <= 0 {
			b.Errorf("attribute dilations %v has a non-positive entry", w.dilations)
		}
	}
	return w
}

func (w windowAttrs) geometry(inSpatial []int, kernel []int) (*geom, error) {
	n := len(inSpatial)
	g := &geom{in: inSpatial, k: kernel, out: make([]int, n), pb: make([]int, n), pe: make([]int, n), s: make([]int, n), d: make([]int, n)}
	if len(kernel) != n {
		return nil, fmt.Errorf("kernel_shape %v does not match %d spatial dimensions", kernel, n)
	}
	for i := 0; i < n; i++ {
		g.s[i], g.d[i] = 1, 1
		if w.strides != nil {
			if len(w.strides) != n {
				return nil, fmt.Errorf("strides %v does not match %d spatial dimensions", w.strides, n)
			}
			g.s[i] = int(w.strides[i])
		}
		if w.dilations != nil {
			if len(w.dilations) != n {
				return nil, fmt.Errorf("dilations %v does not match %d spatial dimensions", w.dilations, n)
			}
			g.d[i] = int(w.dilations[i])
		}
		if w.pads != nil && w.autoPad == "NOTSET" {
			if len(w.pads) != 2*n {
				return nil, fmt.Errorf("pads %v does not match %d spatial dimensions", w.pads, n)
			}
			g.pb[i], g.pe[i] = int(w.pads[i]), int(w.pads[i+n])
			if g.pb[i] < 0 || g.pe[i] < 0 {
				return nil, fmt.Errorf("pads %v has a negative entry", w.pads)
			}
		}
		ek := (kernel[i]-1)*g.d[i] + 1
		switch w.autoPad {
		case "SAME_UPPER", "SAME_LOWER":
			g.out[i] = (inSpatial[i] + g.s[i] - 1) / g.s[i]
			total := max((g.out[i]-1)*g.s[i]+ek-inSpatial[i], 0)
			if w.autoPad == "SAME_UPPER" {
				g.pb[i] = total / 2
			} else {
				g.pb[i] = total - total/2
			}
			g.pe[i] = total - g.pb[i]
		case "VALID":
			g.out[i] = (inSpatial[i]-ek)/g.s[i] + 1
		default:
			span := inSpatial[i] + g.pb[i] + g.pe[i] - ek
			if w.ceil {
				g.out[i] = (span+g.s[i]-1)/g.s[i] + 1
				// The last window must start inside the input or left padding.
				if (g.out[i]-1)*g.s[i] >= inSpatial[i]+g.pb[i] {
					g.out[i]--
				}
			} else {
				g.out[i] = span/g.s[i] + 1
			}
		}
		if g.out[i] < 0 {
			g.out[i] = 0
		}
		if span := inSpatial[i] + g.pb[i] + g.pe[i]; span < ek && w.autoPad != "SAME_UPPER" && w.autoPad != "SAME_LOWER" {
			return nil, fmt.Errorf("kernel %v is larger than the padded input %v", kernel, inSpatial)
		}
	}
	return g, nil
}

// im2col fills col [C*prod(k), prod(out)] for one image x [C, in...].
func im2col[T number](x []T, c int, g *geom, col []T) {
	ns := len(g.in)
	kn := shapeSize(g.k)
	on := shapeSize(g.out)
	inStr := stridesOf(g.in)
	kc := make([]int, ns)
	oc := make([]int, ns)
	inN := shapeSize(g.in)
	for ch := 0; ch < c; ch++ {
		xc := x[ch*inN : (ch+1)*inN]
		for i := range kc {
			kc[i] = 0
		}
		for kk := 0; kk < kn; kk++ {
			row := col[(ch*kn+kk)*on : (ch*kn+kk+1)*on]
			for i := range oc {
				oc[i] = 0
			}
			if ns == 2 {
				// fast path for 2-D
				s0, s1, d0, d1 := g.s[0], g.s[1], g.d[0], g.d[1]
				off0 := kc[0]*d0 - g.pb[0]
				off1 := kc[1]*d1 - g.pb[1]
				W := g.in[1]
				p := 0
				for o0 := 0; o0 < g.out[0]; o0++ {
					i0 := o0*s0 + off0
					if i0 < 0 || i0 >= g.in[0] {
						for o1 := 0; o1 < g.out[1]; o1++ {
							row[p] = 0
							p++
						}
						continue
					}
					base := i0 * W
					for o1 := 0; o1 < g.out[1]; o1++ {
						i1 := o1*s1 + off1
						if i1 < 0 || i1 >= W {
							row[p] = 0
						} else {
							row[p] = xc[base+i1]
						}
						p++
					}
				}
			} else {
				for p := 0; p < on; p++ {
					off := 0
					ok := true
					for i := 0; i < ns; i++ {
						v := oc[i]*g.s[i] + kc[i]*g.d[i] - g.pb[i]
						if v < 0 || v >= g.in[i] {
							ok = false
							break
						}
						off += v * inStr[i]
					}
					if ok {
						row[p] = xc[off]
					} else {
						row[p] = 0
					}
					for i := ns - 1; i >= 0; i-- {
						oc[i]++
						if oc[i] < g.out[i] {
							break
						}
						oc[i] = 0
					}
				}
			}
			for i := ns - 1; i >= 0; i-- {
				kc[i]++
				if kc[i] < g.k[i] {
					break
				}
				kc[i] = 0
			}
		}
	}
}

func buildConv(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(2, 3)
	wa := readWindowAttrs(b, false)
	group := int(b.AttrInt("group", 1))
	if group <= 0 {
		return nil, fmt.Errorf("attribute group=%d must be positive", group)
	}
	return func(rc *RunContext, in, out []*Tensor) error {
		x, w := in[0], in[1]
		var bias *Tensor
		if len(in) > 2 {
			bias = in[2]
		}
		o, err := convAny(rc, x, w, bias, wa, group)
		if err != nil {
			return err
		}
		out[0] = o
		return nil
	}, nil
}

// convAny runs a float32 or float64 convolution.
func convAny(rc *RunContext, x, w, bias *Tensor, wa windowAttrs, group int) (*Tensor, error) {
	if x.DType != w.DType {
		return nil, fmt.Errorf("X type %s and W type %s differ", x.DType, w.DType)
	}
	if len(x.Shape) < 3 || len(w.Shape) != len(x.Shape) {
		return nil, fmt.Errorf("X shape %v and W shape %v must have the same rank >= 3", x.Shape, w.Shape)
	}
	N, C := x.Shape[0], x.Shape[1]
	M := w.Shape[0]
	if C%group != 0 || M%group != 0 || w.Shape[1] != C/group {
		return nil, fmt.Errorf("channels: X has %d, W shape %v, group %d do not agree", C, w.Shape, group)
	}
	kernel := w.Shape[2:]
	if wa.kernel != nil {
		for i, v := range wa.kernel {
			if i >= len(kernel) || int(v) != kernel[i] {
				return nil, fmt.Errorf("kernel_shape %v does not match W shape %v", wa.kernel, w.Shape)
			}
		}
	}
	g, err := wa.geometry(x.Shape[2:], kernel)
	if err != nil {
		return nil, err
	}
	oshape := append([]int{N, M}, g.out...)
	o := rc.Alloc(x.DType, oshape)
	col := rc.Alloc(x.DType, []int{C / group * shapeSize(kernel) * shapeSize(g.out)})
	defer rc.Release(col)
	switch od := o.Data.(type) {
	case []float32:
		convCore(x.Data.([]float32), w.Data.([]float32), N, C, M, group, g, od, col.Data.([]float32), gemmF32)
		if bias != nil {
			bd, ok := bias.Data.([]float32)
			if !ok || len(bd) != M {
				return nil, fmt.Errorf("B must be %d values of type %s", M, x.DType)
			}
			addChannelBias(od, bd, N, M)
		}
	case []float64:
		convCore(x.Data.([]float64), w.Data.([]float64), N, C, M, group, g, od, col.Data.([]float64), gemmT[float64])
		if bias != nil {
			bd, ok := bias.Data.([]float64)
			if !ok || len(bd) != M {
				return nil, fmt.Errorf("B must be %d values of type %s", M, x.DType)
			}
			addChannelBias(od, bd, N, M)
		}
	default:
		return nil, fmt.Errorf("Conv on %s is not supported", x.DType)
	}
	return o, nil
}

func convCore[T number](xd, wd []T, N, C, M, group int, g *geom, od, col []T, gemm func(m, n, k int, a, b, c []T)) {
	cg, mg := C/group, M/group
	kn := shapeSize(g.k)
	on := shapeSize(g.out)
	inN := shapeSize(g.in)
	for n := 0; n < N; n++ {
		for gi := 0; gi < group; gi++ {
			xs := xd[(n*C+gi*cg)*inN : (n*C+(gi+1)*cg)*inN]
			im2col(xs, cg, g, col)
			ws := wd[gi*mg*cg*kn : (gi+1)*mg*cg*kn]
			os := od[(n*M+gi*mg)*on : (n*M+(gi+1)*mg)*on]
			gemm(mg, on, cg*kn, ws, col, os)
		}
	}
}

func addChannelBias[T number](od, bd []T, N, M int) {
	on := len(od) / max(N*M, 1)
	for n := 0; n < N; n++ {
		for m := 0; m < M; m++ {
			s := od[(n*M+m)*on : (n*M+m+1)*on]
			for i := range s {
				s[i] += bd[m]
			}
		}
	}
}

type poolKind int

const (
	poolMax poolKind = iota
	poolAvg
	poolLp
)

func buildPool(kind poolKind) func(b *NodeBuilder) (Kernel, error) {
	return func(b *NodeBuilder) (Kernel, error) {
		b.CheckInputs(1, 1)
		wa := readWindowAttrs(b, true)
		includePad := b.AttrInt("count_include_pad", 0) != 0
		storageOrder := b.AttrInt("storage_order", 0)
		p := float64(b.AttrInt("p", 2))
		if kind == poolMax && b.NumOutputs() > 1 && storageOrder != 0 && storageOrder != 1 {
			return nil, fmt.Errorf("attribute storage_order=%d must be 0 or 1", storageOrder)
		}
		return func(rc *RunContext, in, out []*Tensor) error {
			x := in[0]
			if len(x.Shape) < 3 {
				return fmt.Errorf("X shape %v must have rank >= 3", x.Shape)
			}
			kernel := make([]int, len(wa.kernel))
			for i, v := range wa.kernel {
				kernel[i] = int(v)
			}
			g, err := wa.geometry(x.Shape[2:], kernel)
			if err != nil {
				return err
			}
			N, C := x.Shape[0], x.Shape[1]
			oshape := append([]int{N, C}, g.out...)
			o := rc.Alloc(x.DType, oshape)
			var ind []int64
			if kind == poolMax && len(out) > 1 {
				it := rc.Alloc(Int64, oshape)
				ind = it.Data.([]int64)
				out[1] = it
			}
			pp := poolParams{kind: kind, g: g, nc: N * C, includePad: includePad, storageOrder: storageOrder, p: p}
			switch xd := x.Data.(type) {
			case []float32:
				poolCore(pp, xd, o.Data.([]float32), ind)
				if x.DType == Float16 {
					roundAllF16(o.Data.([]float32))
				}
			case []float64:
				poolCore(pp, xd, o.Data.([]float64), ind)
			default:
				xv, err := x.AsFloat64s()
				if err != nil {
					return err
				}
				res := make([]float64, o.Len())
				poolCore(pp, xv, res, ind)
				storeFloat64s(o, res)
			}
			out[0] = o
			return nil
		}, nil
	}
}

type poolParams struct {
	kind         poolKind
	g            *geom
	nc           int
	includePad   bool
	storageOrder int64
	p            float64
}

func poolCore[T float32 | float64](pp poolParams, xv, res []T, ind []int64) {
	g, kind := pp.g, pp.kind
	on, inN, kn := shapeSize(g.out), shapeSize(g.in), shapeSize(g.k)
	ns := len(g.in)
	inStr := stridesOf(g.in)
	finish := func(nc, r int, acc, best float64, bestIdx, cnt, padCnt int) {
		switch kind {
		case poolMax:
			res[r] = T(best)
			if ind != nil {
				idx := nc*inN + bestIdx
				if pp.storageOrder == 1 && ns == 2 && bestIdx >= 0 {
					h, w := bestIdx/g.in[1], bestIdx%g.in[1]
					idx = nc*inN + w*g.in[0] + h
				}
				ind[r] = int64(idx)
			}
		case poolAvg:
			div := cnt
			if pp.includePad {
				div = padCnt
			}
			if div > 0 {
				res[r] = T(acc / float64(div))
			}
		case poolLp:
			res[r] = T(math.Pow(acc, 1/pp.p))
		}
	}
	if ns == 2 && kind != poolLp {
		H, W := g.in[0], g.in[1]
		for nc := 0; nc < pp.nc; nc++ {
			xs := xv[nc*inN : (nc+1)*inN]
			r := nc * on
			for oh := 0; oh < g.out[0]; oh++ {
				hs := oh*g.s[0] - g.pb[0]
				for ow := 0; ow < g.out[1]; ow++ {
					ws := ow*g.s[1] - g.pb[1]
					var acc float64
					best, bestIdx := math.Inf(-1), -1
					cnt, padCnt := 0, 0
					for kh := 0; kh < g.k[0]; kh++ {
						h := hs + kh*g.d[0]
						hIn := h >= 0 && h < H
						hPad := h >= -g.pb[0] && h < H+g.pe[0]
						for kw := 0; kw < g.k[1]; kw++ {
							w := ws + kw*g.d[1]
							if hPad && w >= -g.pb[1] && w < W+g.pe[1] {
								padCnt++
							}
							if !hIn || w < 0 || w >= W {
								continue
							}
							v := float64(xs[h*W+w])
							cnt++
							if kind == poolMax {
								if v > best || bestIdx < 0 {
									best, bestIdx = v, h*W+w
								}
							} else {
								acc += v
							}
						}
					}
					finish(nc, r, acc, best, bestIdx, cnt, padCnt)
					r++
				}
			}
		}
		return
	}
	oc := make([]int, ns)
	kc := make([]int, ns)
	for nc := 0; nc < pp.nc; nc++ {
		xs := xv[nc*inN : (nc+1)*inN]
		clear(oc)
		for op := 0; op < on; op++ {
			clear(kc)
			var acc float64
			best, bestIdx := math.Inf(-1), -1
			cnt, padCnt := 0, 0
			for kk := 0; kk < kn; kk++ {
				off := 0
				ok, inPad := true, true
				for i := 0; i < ns; i++ {
					v := oc[i]*g.s[i] + kc[i]*g.d[i] - g.pb[i]
					if v < 0 || v >= g.in[i] {
						ok = false
					}
					if v < -g.pb[i] || v >= g.in[i]+g.pe[i] {
						inPad = false
					}
					off += v * inStr[i]
				}
				if inPad {
					padCnt++
				}
				if ok {
					v := float64(xs[off])
					cnt++
					switch kind {
					case poolMax:
						if v > best || bestIdx < 0 {
							best, bestIdx = v, off
						}
					case poolAvg:
						acc += v
					case poolLp:
						acc += math.Pow(math.Abs(v), pp.p)
					}
				}
				for i := ns - 1; i >= 0; i-- {
					kc[i]++
					if kc[i] < g.k[i] {
						break
					}
					kc[i] = 0
				}
			}
			finish(nc, nc*on+op, acc, best, bestIdx, cnt, padCnt)
			for i := ns - 1; i >= 0; i-- {
				oc[i]++
				if oc[i] < g.out[i] {
					break
				}
				oc[i] = 0
			}
		}
	}
}

func buildGlobalPool(kind poolKind) func(b *NodeBuilder) (Kernel, error) {
	return func(b *NodeBuilder) (Kernel, error) {
		b.CheckInputs(1, 1)
		p := float64(b.AttrInt("p", 2))
		return func(rc *RunContext, in, out []*Tensor) error {
			x := in[0]
			if len(x.Shape) < 2 {
				return fmt.Errorf("X shape %v must have rank >= 2", x.Shape)
			}
			nc := x.Shape[0] * x.Shape[1]
			sp := shapeSize(x.Shape[2:])
			oshape := []int{x.Shape[0], x.Shape[1]}
			for range x.Shape[2:] {
				oshape = append(oshape, 1)
			}
			if xd, ok := x.Data.([]float32); ok && x.DType == Float && kind != poolLp {
				o := rc.Alloc(Float, oshape)
				od := o.Data.([]float32)
				for i := 0; i < nc; i++ {
					s := xd[i*sp : (i+1)*sp]
					if kind == poolMax {
						m := float32(math.Inf(-1))
						for _, v := range s {
							if v > m || v != v {
								m = v
							}
						}
						od[i] = m
						continue
					}
					var a float64
					for _, v := range s {
						a += float64(v)
					}
					od[i] = float32(a / float64(sp))
				}
				out[0] = o
				return nil
			}
			xv, err := x.AsFloat64s()
			if err != nil {
				return err
			}
			res := make([]float64, nc)
			for i := 0; i < nc; i++ {
				s := xv[i*sp : (i+1)*sp]
				switch kind {
				case poolMax:
					m := math.Inf(-1)
					for _, v := range s {
						m = math.Max(m, v)
					}
					res[i] = m
				case poolAvg:
					var a float64
					for _, v := range s {
						a += v
					}
					res[i] = a / float64(sp)
				case poolLp:
					var a float64
					for _, v := range s {
						a += math.Pow(math.Abs(v), p)
					}
					res[i] = math.Pow(a, 1/p)
				}
			}
			o := rc.Alloc(x.DType, oshape)
			storeFloat64s(o, res)
			out[0] = o
			return nil
		}, nil
	}
}

func buildBatchNorm(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(5, 5)
	eps := float64(b.AttrFloat("epsilon", 1e-5))
	momentum := float64(b.AttrFloat("momentum", 0.9))
	if b.AttrInt("spatial", 1) != 1 {
		return nil, Unsupported("spatial=0 (per-activation statistics)")
	}
	training := b.AttrInt("training_mode", 0) != 0
	if b.NumOutputs() > 1 && !training {
		if b.Opset >= 14 {
			return nil, fmt.Errorf("outputs running_mean and running_var need training_mode=1")
		}
		return nil, Unsupported("training outputs (running mean/var) before opset 14")
	}
	return func(rc *RunContext, in, out []*Tensor) error {
		x := in[0]
		if len(x.Shape) < 2 {
			return fmt.Errorf("X shape %v must have rank >= 2", x.Shape)
		}
		C := x.Shape[1]
		params := make([][]float64, 4)
		for i := range params {
			v, err := in[i+1].AsFloat64s()
			if err != nil {
				return err
			}
			if len(v) != C {
				return fmt.Errorf("input %d has %d elements, want %d channels", i+1, len(v), C)
			}
			params[i] = v
		}
		scale, bias, mean, vr := params[0], params[1], params[2], params[3]
		if training {
			xv, err := x.AsFloat64s()
			if err != nil {
				return err
			}
			N, sp := x.Shape[0], shapeSize(x.Shape[2:])
			cnt := float64(N * sp)
			bm, bv := make([]float64, C), make([]float64, C)
			for n := 0; n < N; n++ {
				for c := 0; c < C; c++ {
					for _, v := range xv[(n*C+c)*sp : (n*C+c+1)*sp] {
						bm[c] += v
					}
				}
			}
			for c := range bm {
				bm[c] /= cnt
			}
			for n := 0; n < N; n++ {
				for c := 0; c < C; c++ {
					for _, v := range xv[(n*C+c)*sp : (n*C+c+1)*sp] {
						bv[c] += (v - bm[c]) * (v - bm[c])
					}
				}
			}
			rm, rv := make([]float64, C), make([]float64, C)
			for c := range bv {
				bv[c] /= cnt
				rm[c] = mean[c]*momentum + bm[c]*(1-momentum)
				rv[c] = vr[c]*momentum + bv[c]*(1-momentum)
			}
			mean, vr = bm, bv
			if len(out) > 1 {
				t := rc.Alloc(in[3].DType, []int{C})
				storeFloat64s(t, rm)
				out[1] = t
			}
			if len(out) > 2 {
				t := rc.Alloc(in[4].DType, []int{C})
				storeFloat64s(t, rv)
				out[2] = t
			}
		}
		mul := make([]float64, C)
		add := make([]float64, C)
		for c := 0; c < C; c++ {
			mul[c] = scale[c] / math.Sqrt(vr[c]+eps)
			add[c] = bias[c] - mean[c]*mul[c]
		}
		N := x.Shape[0]
		sp := shapeSize(x.Shape[2:])
		o := rc.AllocLike(x)
		switch xd := x.Data.(type) {
		case []float32:
			od := o.Data.([]float32)
			for n := 0; n < N; n++ {
				for c := 0; c < C; c++ {
					m, a := float32(mul[c]), float32(add[c])
					base := (n*C + c) * sp
					for i := base; i < base+sp; i++ {
						od[i] = xd[i]*m + a
					}
				}
			}
		case []float64:
			od := o.Data.([]float64)
			for n := 0; n < N; n++ {
				for c := 0; c < C; c++ {
					base := (n*C + c) * sp
					for i := base; i < base+sp; i++ {
						od[i] = xd[i]*mul[c] + add[c]
					}
				}
			}
		default:
			return fmt.Errorf("X type %s is not supported", x.DType)
		}
		out[0] = o
		return nil
	}, nil
}

func buildInstanceNorm(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(3, 3)
	eps := float64(b.AttrFloat("epsilon", 1e-5))
	return func(rc *RunContext, in, out []*Tensor) error {
		x := in[0]
		if len(x.Shape) < 2 {
			return fmt.Errorf("X shape %v must have rank >= 2", x.Shape)
		}
		xv, err := x.AsFloat64s()
		if err != nil {
			return err
		}
		scale, err := in[1].AsFloat64s()
		if err != nil {
			return err
		}
		bias, err := in[2].AsFloat64s()
		if err != nil {
			return err
		}
		N, C := x.Shape[0], x.Shape[1]
		if len(scale) != C || len(bias) != C {
			return fmt.Errorf("scale and B must have %d elements", C)
		}
		sp := shapeSize(x.Shape[2:])
		res := make([]float64, len(xv))
		for n := 0; n < N; n++ {
			for c := 0; c < C; c++ {
				s := xv[(n*C+c)*sp : (n*C+c+1)*sp]
				mean, vr := meanVar(s)
				inv := 1 / math.Sqrt(vr+eps)
				r := res[(n*C+c)*sp:]
				for i, v := range s {
					r[i] = (v-mean)*inv*scale[c] + bias[c]
				}
			}
		}
		o := rc.AllocLike(x)
		storeFloat64s(o, res)
		out[0] = o
		return nil
	}, nil
}

func meanVar(s []float64) (float64, float64) {
	if len(s) == 0 {
		return 0, 0
	}
	var sum float64
	for _, v := range s {
		sum += v
	}
	mean := sum / float64(len(s))
	var sq float64
	for _, v := range s {
		sq += (v - mean) * (v - mean)
	}
	return mean, sq / float64(len(s))
}

func buildLRN(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(1, 1)
	alpha := float64(b.AttrFloat("alpha", 1e-4))
	beta := float64(b.AttrFloat("beta", 0.75))
	bias := float64(b.AttrFloat("bias", 1))
	size := int(b.AttrInt("size", 0))
	if size <= 0 {
		return nil, fmt.Errorf("attribute size=%d must be positive", size)
	}
	return func(rc *RunContext, in, out []*Tensor) error {
		x := in[0]
		if len(x.Shape) < 2 {
			return fmt.Errorf("X shape %v must have rank >= 2", x.Shape)
		}
		xv, err := x.AsFloat64s()
		if err != nil {
			return err
		}
		N, C := x.Shape[0], x.Shape[1]
		sp := shapeSize(x.Shape[2:])
		lo, hi := (size-1)/2, (size-1+1)/2
		res := make([]float64, len(xv))
		for n := 0; n < N; n++ {
			for c := 0; c < C; c++ {
				for i := 0; i < sp; i++ {
					var sq float64
					for cc := max(0, c-lo); cc <= min(C-1, c+hi); cc++ {
						v := xv[(n*C+cc)*sp+i]
						sq += v * v
					}
					p := (n*C+c)*sp + i
					res[p] = xv[p] / math.Pow(bias+alpha/float64(size)*sq, beta)
				}
			}
		}
		o := rc.AllocLike(x)
		storeFloat64s(o, res)
		out[0] = o
		return nil
	}, nil
}

// normalizeOver normalizes x over the given axes: (x-mean)/f(var).
func normGroups(shape []int, red []bool) (idx []int, groups int) {
	kshape := make([]int, len(shape))
	for i, d := range shape {
		if red[i] {
			kshape[i] = 1
		} else {
			kshape[i] = d
		}
	}
	st := stridesOf(kshape)
	for i := range st {
		if red[i] {
			st[i] = 0
		}
	}
	return stridedIndex(shape, 0, st), shapeSize(kshape)
}

func buildMVN(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(1, 1)
	axes := b.AttrInts("axes", []int64{0, 2, 3})
	return func(rc *RunContext, in, out []*Tensor) error {
		x := in[0]
		red, err := reduceAxes(axes, len(x.Shape))
		if err != nil {
			return err
		}
		xv, err := x.AsFloat64s()
		if err != nil {
			return err
		}
		idx, ng := normGroups(x.Shape, red)
		sum := make([]float64, ng)
		sq := make([]float64, ng)
		cnt := make([]float64, ng)
		for i, v := range xv {
			sum[idx[i]] += v
			cnt[idx[i]]++
		}
		for g := range sum {
			if cnt[g] > 0 {
				sum[g] /= cnt[g]
			}
		}
		for i, v := range xv {
			d := v - sum[idx[i]]
			sq[idx[i]] += d * d
		}
		res := make([]float64, len(xv))
		for i, v := range xv {
			g := idx[i]
			res[i] = (v - sum[g]) / (math.Sqrt(sq[g]/cnt[g]) + 1e-9)
		}
		o := rc.AllocLike(x)
		storeFloat64s(o, res)
		out[0] = o
		return nil
	}, nil
}

func buildLayerNorm(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(2, 3)
	axis := b.AttrInt("axis", -1)
	eps := float64(b.AttrFloat("epsilon", 1e-5))
	return func(rc *RunContext, in, out []*Tensor) error {
		x := in[0]
		r := len(x.Shape)
		ax, err := normAxis(axis, r)
		if err != nil {
			return err
		}
		if done, err := layerNormF32(rc, in, out, ax, eps); done || err != nil {
			return err
		}
		xv, err := x.AsFloat64s()
		if err != nil {
			return err
		}
		scale, err := in[1].AsFloat64s()
		if err != nil {
			return err
		}
		var bias []float64
		if len(in) > 2 && in[2] != nil {
			if bias, err = in[2].AsFloat64s(); err != nil {
				return err
			}
		}
		outer, inner := shapeSize(x.Shape[:ax]), shapeSize(x.Shape[ax:])
		nshape := x.Shape[ax:]
		sIdx := bcastIndex(nshape, in[1].Shape)
		var bIdx []int
		if bias != nil {
			bIdx = bcastIndex(nshape, in[2].Shape)
		}
		res := make([]float64, len(xv))
		means := make([]float64, outer)
		invs := make([]float64, outer)
		for i := 0; i < outer; i++ {
			s := xv[i*inner : (i+1)*inner]
			mean, vr := meanVar(s)
			inv := 1 / math.Sqrt(vr+eps)
			means[i], invs[i] = mean, inv
			for j, v := range s {
				y := (v - mean) * inv * scale[sIdx[j]]
				if bias != nil {
					y += bias[bIdx[j]]
				}
				res[i*inner+j] = y
			}
		}
		o := rc.AllocLike(x)
		storeFloat64s(o, res)
		out[0] = o
		sshape := append([]int{}, x.Shape[:ax]...)
		for range x.Shape[ax:] {
			sshape = append(sshape, 1)
		}
		// Mean and InvStdDev are in the stash type (float32 by default).
		if len(out) > 1 {
			t := rc.Alloc(Float, sshape)
			storeFloat64s(t, means)
			out[1] = t
		}
		if len(out) > 2 {
			t := rc.Alloc(Float, sshape)
			storeFloat64s(t, invs)
			out[2] = t
		}
		return nil
	}, nil
}

// layerNormF32 is LayerNormalization's fast path for float32 data with a
// scale (and bias) covering the whole normalized shape; it reports false
// when the inputs need the general path.
func layerNormF32(rc *RunContext, in, out []*Tensor, ax int, eps float64) (bool, error) {
	x := in[0]
	xd, ok := x.Data.([]float32)
	if !ok || x.DType != Float {
		return false, nil
	}
	inner := shapeSize(x.Shape[ax:])
	sd, ok := in[1].Data.([]float32)
	if !ok || len(sd) != inner {
		return false, nil
	}
	var bd []float32
	if len(in) > 2 && in[2] != nil {
		if bd, ok = in[2].Data.([]float32); !ok || len(bd) != inner {
			return false, nil
		}
	}
	outer := shapeSize(x.Shape[:ax])
	o := rc.AllocLike(x)
	od := o.Data.([]float32)
	sshape := append([]int{}, x.Shape[:ax]...)
	for range x.Shape[ax:] {
		sshape = append(sshape, 1)
	}
	var mt, it []float32
	if len(out) > 1 {
		t := rc.Alloc(Float, sshape)
		mt, out[1] = t.Data.([]float32), t
	}
	if len(out) > 2 {
		t := rc.Alloc(Float, sshape)
		it, out[2] = t.Data.([]float32), t
	}
	for i := 0; i < outer; i++ {
		row := xd[i*inner : (i+1)*inner]
		var sum float64
		for _, v := range row {
			sum += float64(v)
		}
		mean := sum / float64(inner)
		var sq float64
		for _, v := range row {
			d := float64(v) - mean
			sq += d * d
		}
		inv := 1 / math.Sqrt(sq/float64(inner)+eps)
		dst := od[i*inner : (i+1)*inner]
		m32, i32 := float32(mean), float32(inv)
		for j, v := range row {
			y := (v - m32) * i32 * sd[j]
			if bd != nil {
				y += bd[j]
			}
			dst[j] = y
		}
		if mt != nil {
			mt[i] = m32
		}
		if it != nil {
			it[i] = i32
		}
	}
	out[0] = o
	return true, nil
}

func buildLpNormalization(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(1, 1)
	axis := b.AttrInt("axis", -1)
	p := b.AttrInt("p", 2)
	if p != 1 && p != 2 {
		return nil, fmt.Errorf("attribute p=%d must be 1 or 2", p)
	}
	return func(rc *RunContext, in, out []*Tensor) error {
		x := in[0]
		ax, err := normAxis(axis, len(x.Shape))
		if err != nil {
			return err
		}
		xv, err := x.AsFloat64s()
		if err != nil {
			return err
		}
		outer, dim, inner := shapeSize(x.Shape[:ax]), x.Shape[ax], shapeSize(x.Shape[ax+1:])
		res := make([]float64, len(xv))
		for o := 0; o < outer; o++ {
			for i := 0; i < inner; i++ {
				var norm float64
				for j := 0; j < dim; j++ {
					v := xv[(o*dim+j)*inner+i]
					if p == 1 {
						norm += math.Abs(v)
					} else {
						norm += v * v
					}
				}
				if p == 2 {
					norm = math.Sqrt(norm)
				}
				for j := 0; j < dim; j++ {
					q := (o*dim+j)*inner + i
					if norm != 0 {
						res[q] = xv[q] / norm
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
	Register(
		OpDef{Name: "LpNormalization", Since: 1, Build: buildLpNormalization},
		OpDef{Name: "Conv", Since: 1, Build: buildConv},
		OpDef{Name: "MaxPool", Since: 1, Build: buildPool(poolMax)},
		OpDef{Name: "AveragePool", Since: 1, Build: buildPool(poolAvg)},
		OpDef{Name: "LpPool", Since: 2, Build: buildPool(poolLp)},
		OpDef{Name: "GlobalAveragePool", Since: 1, Build: buildGlobalPool(poolAvg)},
		OpDef{Name: "GlobalMaxPool", Since: 1, Build: buildGlobalPool(poolMax)},
		OpDef{Name: "GlobalLpPool", Since: 2, Build: buildGlobalPool(poolLp)},
		OpDef{Name: "BatchNormalization", Since: 7, Build: buildBatchNorm},
		OpDef{Name: "InstanceNormalization", Since: 6, Build: buildInstanceNorm},
		OpDef{Name: "LRN", Since: 1, Build: buildLRN},
		OpDef{Name: "MeanVarianceNormalization", Since: 9, Build: buildMVN},
		OpDef{Name: "LayerNormalization", Since: 17, Build: buildLayerNorm},
	)
}
