package onnx

import "fmt"

// ConvTranspose: gemm into columns, then scatter-add the columns (col2im).

func buildConvTranspose(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(2, 3)
	wa := readWindowAttrs(b, false)
	group := int(b.AttrInt("group", 1))
	if group <= 0 {
		return nil, fmt.Errorf("attribute group=%d must be positive", group)
	}
	outPad := b.AttrInts("output_padding", nil)
	outShape := b.AttrInts("output_shape", nil)
	return func(rc *RunContext, in, out []*Tensor) error {
		x, w := in[0], in[1]
		if x.DType != w.DType || (x.DType != Float && x.DType != Double) {
			return fmt.Errorf("ConvTranspose on %s and %s is not supported", x.DType, w.DType)
		}
		if len(x.Shape) < 3 || len(w.Shape) != len(x.Shape) {
			return fmt.Errorf("X shape %v and W shape %v must have the same rank >= 3", x.Shape, w.Shape)
		}
		ns := len(x.Shape) - 2
		N, C := x.Shape[0], x.Shape[1]
		if w.Shape[0] != C || C%group != 0 {
			return fmt.Errorf("W shape %v does not match %d input channels and group %d", w.Shape, C, group)
		}
		mg := w.Shape[1]
		M := mg * group
		kernel := w.Shape[2:]
		g := &geom{in: x.Shape[2:], k: kernel, out: make([]int, ns), pb: make([]int, ns), pe: make([]int, ns), s: make([]int, ns), d: make([]int, ns)}
		for i := 0; i < ns; i++ {
			g.s[i], g.d[i] = 1, 1
			if wa.strides != nil {
				if len(wa.strides) != ns {
					return fmt.Errorf("strides %v does not match %d spatial dimensions", wa.strides, ns)
				}
				g.s[i] = int(wa.strides[i])
			}
			if wa.dilations != nil {
				if len(wa.dilations) != ns {
					return fmt.Errorf("dilations %v does not match %d spatial dimensions", wa.dilations, ns)
				}
				g.d[i] = int(wa.dilations[i])
			}
			op := 0
			if outPad != nil {
				if len(outPad) != ns {
					return fmt.Errorf("output_padding %v does not match %d spatial dimensions", outPad, ns)
				}
				op = int(outPad[i])
			}
			ek := (kernel[i]-1)*g.d[i] + 1
			full := g.s[i]*(g.in[i]-1) + op + ek
			switch {
			case outShape != nil:
				if len(outShape) != ns && len(outShape) != ns+2 {
					return fmt.Errorf("output_shape %v does not match %d spatial dimensions", outShape, ns)
				}
				target := int(outShape[len(outShape)-ns+i])
				total := full - target
				h := floorDiv(total, 2)
				if wa.autoPad == "SAME_UPPER" {
					g.pb[i], g.pe[i] = h, total-h
				} else {
					g.pb[i], g.pe[i] = total-h, h
				}
			case wa.autoPad == "SAME_UPPER" || wa.autoPad == "SAME_LOWER":
				target := g.in[i] * g.s[i]
				total := full - target
				if wa.autoPad == "SAME_UPPER" {
					g.pb[i], g.pe[i] = total/2, total-total/2
				} else {
					g.pb[i], g.pe[i] = total-total/2, total/2
				}
			case wa.pads != nil && wa.autoPad == "NOTSET":
				if len(wa.pads) != 2*ns {
					return fmt.Errorf("pads %v does not match %d spatial dimensions", wa.pads, ns)
				}
				g.pb[i], g.pe[i] = int(wa.pads[i]), int(wa.pads[i+ns])
			}
			g.out[i] = full - g.pb[i] - g.pe[i]
			if g.out[i] < 0 {
				return fmt.Errorf("output dimension %d is negative", g.out[i])
			}
		}
		oshape := append([]int{N, M}, g.out...)
		o := rc.Alloc(x.DType, oshape)
		var bias *Tensor
		if len(in) > 2 {
			bias = in[2]
		}
		switch od := o.Data.(type) {
		case []float32:
			convTransposeCore(x.Data.([]float32), w.Data.([]float32), N, C, M, group, g, od, gemmF32)
			if bias != nil {
				bd, ok := bias.Data.([]float32)
				if !ok || len(bd) != M {
					return fmt.Errorf("B must be %d values of type %s", M, x.DType)
				}
				addChannelBias(od, bd, N, M)
			}
		case []float64:
			convTransposeCore(x.Data.([]float64), w.Data.([]float64), N, C, M, group, g, od, gemmT[float64])
			if bias != nil {
				bd, ok := bias.Data.([]float64)
				if !ok || len(bd) != M {
					return fmt.Errorf("B must be %d values of type %s", M, x.DType)
				}
				addChannelBias(od, bd, N, M)
			}
		}
		out[0] = o
		return nil
	}, nil
}

func convTransposeCore[T number](xd, wd []T, N, C, M, group int, g *geom, od []T, gemm func(m, n, k int, a, b, c []T)) {
	cg, mg := C/group, M/group
	kn := shapeSize(g.k)
	inN := shapeSize(g.in)
	on := shapeSize(g.out)
	ns := len(g.in)
	// W_g is [cg, mg*kn]; we need its transpose [mg*kn, cg].
	wt := make([]T, mg*kn*cg)
	col := make([]T, mg*kn*inN)
	outStr := stridesOf(g.out)
	ic := make([]int, ns)
	kc := make([]int, ns)
	for gi := 0; gi < group; gi++ {
		transpose2D(wt, wd[gi*cg*mg*kn:(gi+1)*cg*mg*kn], cg, mg*kn)
		for n := 0; n < N; n++ {
			clear(col)
			xs := xd[(n*C+gi*cg)*inN : (n*C+(gi+1)*cg)*inN]
			gemm(mg*kn, inN, cg, wt, xs, col)
			for m := 0; m < mg; m++ {
				os := od[(n*M+gi*mg+m)*on : (n*M+gi*mg+m+1)*on]
				for i := range kc {
					kc[i] = 0
				}
				for kk := 0; kk < kn; kk++ {
					row := col[(m*kn+kk)*inN : (m*kn+kk+1)*inN]
					for i := range ic {
						ic[i] = 0
					}
					for p := 0; p < inN; p++ {
						off := 0
						ok := true
						for i := 0; i < ns; i++ {
							v := ic[i]*g.s[i] + kc[i]*g.d[i] - g.pb[i]
							if v < 0 || v >= g.out[i] {
								ok = false
								break
							}
							off += v * outStr[i]
						}
						if ok {
							os[off] += row[p]
						}
						for i := ns - 1; i >= 0; i-- {
							ic[i]++
							if ic[i] < g.in[i] {
								break
							}
							ic[i] = 0
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
	}
}

func floorDiv(a, b int) int {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

func init() {
	Register(OpDef{Name: "ConvTranspose", Since: 1, Build: buildConvTranspose})
}
