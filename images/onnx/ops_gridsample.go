package onnx

import (
	"fmt"
	"math"
)

// GridSample (opset 16) on 4-D inputs.

func gsReflect(x, lo, hi float64) float64 {
	rng := hi - lo
	if rng <= 0 {
		return lo
	}
	switch {
	case x < lo:
		dx := lo - x
		n := math.Floor(dx / rng)
		r := dx - n*rng
		if int64(n)%2 == 0 {
			return lo + r
		}
		return hi - r
	case x > hi:
		dx := x - hi
		n := math.Floor(dx / rng)
		r := dx - n*rng
		if int64(n)%2 == 0 {
			return hi - r
		}
		return lo + r
	}
	return x
}

func cubicCoeffs(t float64) [4]float64 {
	const A = -0.75
	t = math.Abs(t)
	return [4]float64{
		((A*(t+1)-5*A)*(t+1)+8*A)*(t+1) - 4*A,
		((A+2)*t-(A+3))*t*t + 1,
		((A+2)*(1-t)-(A+3))*(1-t)*(1-t) + 1,
		((A*(2-t)-5*A)*(2-t)+8*A)*(2-t) - 4*A,
	}
}

func buildGridSample(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(2, 2)
	align := b.AttrInt("align_corners", 0) != 0
	mode := b.AttrString("mode", "bilinear")
	pad := b.AttrString("padding_mode", "zeros")
	if mode != "bilinear" && mode != "nearest" && mode != "bicubic" {
		return nil, fmt.Errorf("attribute mode=%q is not bilinear, nearest or bicubic", mode)
	}
	if pad != "zeros" && pad != "border" && pad != "reflection" {
		return nil, fmt.Errorf("attribute padding_mode=%q is not zeros, border or reflection", pad)
	}
	return func(rc *RunContext, in, out []*Tensor) error {
		x, grid := in[0], in[1]
		if len(x.Shape) != 4 || len(grid.Shape) != 4 || grid.Shape[3] != 2 || grid.Shape[0] != x.Shape[0] {
			return fmt.Errorf("X shape %v and grid shape %v must be [N,C,H,W] and [N,Ho,Wo,2]", x.Shape, grid.Shape)
		}
		xv, err := x.AsFloat64s()
		if err != nil {
			return err
		}
		gv, err := grid.AsFloat64s()
		if err != nil {
			return err
		}
		N, C, H, W := x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3]
		Ho, Wo := grid.Shape[1], grid.Shape[2]
		xMin, yMin, xMax, yMax := -0.5, -0.5, float64(W)-0.5, float64(H)-0.5
		if align {
			xMin, yMin, xMax, yMax = 0, 0, float64(W-1), float64(H-1)
		}
		denorm := func(v float64, n int) float64 {
			if align {
				return (v + 1) / 2 * float64(n-1)
			}
			return ((v+1)*float64(n) - 1) / 2
		}
		oshape := []int{N, C, Ho, Wo}
		res := make([]float64, checkAlloc(oshape))
		for n := 0; n < N; n++ {
			for c := 0; c < C; c++ {
				img := xv[(n*C+c)*H*W : (n*C+c+1)*H*W]
				pixel := func(r, col int) float64 {
					switch pad {
					case "zeros":
						if col < 0 || col >= W || r < 0 || r >= H {
							return 0
						}
					case "border":
						col = min(max(col, 0), W-1)
						r = min(max(r, 0), H-1)
					default:
						col = int(gsReflect(float64(col), xMin, xMax))
						r = int(gsReflect(float64(r), yMin, yMax))
						col = min(max(col, 0), W-1)
						r = min(max(r, 0), H-1)
					}
					return img[r*W+col]
				}
				for i := 0; i < Ho; i++ {
					for j := 0; j < Wo; j++ {
						g := gv[((n*Ho+i)*Wo+j)*2:]
						px, py := denorm(g[0], W), denorm(g[1], H)
						if mode == "nearest" {
							px, py = math.RoundToEven(px), math.RoundToEven(py)
						}
						switch pad {
						case "border":
							px = math.Min(math.Max(px, 0), float64(W-1))
							py = math.Min(math.Max(py, 0), float64(H-1))
						case "reflection":
							px = gsReflect(px, xMin, xMax)
							py = gsReflect(py, yMin, yMax)
						}
						var v float64
						switch mode {
						case "nearest":
							v = pixel(int(math.RoundToEven(py)), int(math.RoundToEven(px)))
						case "bilinear":
							x1, y1 := math.Floor(px), math.Floor(py)
							dx1, dy1 := px-x1, py-y1
							dx2, dy2 := 1-dx1, 1-dy1
							c1, r1 := int(x1), int(y1)
							v = dy2*(dx2*pixel(r1, c1)+dx1*pixel(r1, c1+1)) + dy1*(dx2*pixel(r1+1, c1)+dx1*pixel(r1+1, c1+1))
						default:
							x0, y0 := math.Floor(px)-1, math.Floor(py)-1
							cx, cy := cubicCoeffs(px-x0-1), cubicCoeffs(py-y0-1)
							for a := 0; a < 4; a++ {
								var row float64
								for bb := 0; bb < 4; bb++ {
									row += cx[bb] * pixel(int(y0)+a, int(x0)+bb)
								}
								v += cy[a] * row
							}
						}
						res[((n*C+c)*Ho+i)*Wo+j] = v
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
	Register(OpDef{Name: "GridSample", Since: 16, Build: buildGridSample})
}
