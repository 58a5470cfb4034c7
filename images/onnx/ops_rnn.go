package onnx

import (
	"fmt"
	"math"
	"strings"
)

// RNN, GRU and LSTM (computed in float64).

type rnnKind int

const (
	kindRNN rnnKind = iota
	kindGRU
	kindLSTM
)

type actFn func(float64) float64

func rnnActivation(name string, alpha, beta float64, hasA, hasB bool) (actFn, error) {
	def := func(v, d float64, has bool) float64 {
		if has {
			return v
		}
		return d
	}
	switch strings.ToLower(name) {
	case "sigmoid":
		return sigmoid, nil
	case "tanh":
		return math.Tanh, nil
	case "relu":
		return func(x float64) float64 { return math.Max(x, 0) }, nil
	case "affine":
		a, b := def(alpha, 1, hasA), def(beta, 0, hasB)
		return func(x float64) float64 { return a*x + b }, nil
	case "leakyrelu":
		a := def(alpha, 0.01, hasA)
		return func(x float64) float64 {
			if x < 0 {
				return a * x
			}
			return x
		}, nil
	case "thresholdedrelu":
		a := def(alpha, 1, hasA)
		return func(x float64) float64 {
			if x > a {
				return x
			}
			return 0
		}, nil
	case "scaledtanh":
		a, b := def(alpha, 1, hasA), def(beta, 1, hasB)
		return func(x float64) float64 { return a * math.Tanh(b*x) }, nil
	case "hardsigmoid":
		a, b := def(alpha, 0.2, hasA), def(beta, 0.5, hasB)
		return func(x float64) float64 { return math.Max(0, math.Min(1, a*x+b)) }, nil
	case "elu":
		a := def(alpha, 1, hasA)
		return func(x float64) float64 {
			if x < 0 {
				return a * (math.Exp(x) - 1)
			}
			return x
		}, nil
	case "softsign":
		return func(x float64) float64 { return x / (1 + math.Abs(x)) }, nil
	case "softplus":
		return func(x float64) float64 { return math.Log1p(math.Exp(x)) }, nil
	}
	return nil, fmt.Errorf("activation %q is not supported", name)
}

func buildRNN(kind rnnKind) func(b *NodeBuilder) (Kernel, error) {
	return func(b *NodeBuilder) (Kernel, error) {
		maxIn := 6
		nGates, nAct := 1, 1
		defActs := []string{"Tanh"}
		switch kind {
		case kindGRU:
			nGates, nAct = 3, 2
			defActs = []string{"Sigmoid", "Tanh"}
		case kindLSTM:
			maxIn, nGates, nAct = 8, 4, 3
			defActs = []string{"Sigmoid", "Tanh", "Tanh"}
		}
		b.CheckInputs(3, maxIn)
		hidden := int(b.AttrInt("hidden_size", 0))
		dir := b.AttrString("direction", "forward")
		layout := b.AttrInt("layout", 0)
		clip := float64(b.AttrFloat("clip", 0))
		hasClip := b.HasAttr("clip")
		lbr := b.AttrInt("linear_before_reset", 0) != 0
		if b.AttrInt("input_forget", 0) != 0 {
			return nil, Unsupported("input_forget=1")
		}
		dirs := 1
		switch dir {
		case "forward", "reverse":
		case "bidirectional":
			dirs = 2
		default:
			return nil, fmt.Errorf("attribute direction=%q is not forward, reverse or bidirectional", dir)
		}
		if layout != 0 && layout != 1 {
			return nil, fmt.Errorf("attribute layout=%d must be 0 or 1", layout)
		}
		names := b.AttrStrings("activations", nil)
		alphas := b.AttrFloats("activation_alpha", nil)
		betas := b.AttrFloats("activation_beta", nil)
		if names == nil {
			for d := 0; d < dirs; d++ {
				names = append(names, defActs...)
			}
		}
		if len(names) != nAct*dirs {
			return nil, fmt.Errorf("attribute activations has %d entries, want %d", len(names), nAct*dirs)
		}
		acts := make([]actFn, len(names))
		for i, n := range names {
			var a, be float64
			if i < len(alphas) {
				a = float64(alphas[i])
			}
			if i < len(betas) {
				be = float64(betas[i])
			}
			f, err := rnnActivation(n, a, be, i < len(alphas), i < len(betas))
			if err != nil {
				return nil, err
			}
			acts[i] = f
		}
		return func(rc *RunContext, in, out []*Tensor) error {
			X, W, R := in[0], in[1], in[2]
			if len(X.Shape) != 3 || len(W.Shape) != 3 || len(R.Shape) != 3 {
				return fmt.Errorf("X, W and R must be 3-D, got %v %v %v", X.Shape, W.Shape, R.Shape)
			}
			seq, batch, isz := X.Shape[0], X.Shape[1], X.Shape[2]
			if layout == 1 {
				seq, batch = batch, seq
			}
			H := hidden
			if H == 0 {
				H = W.Shape[1] / nGates
			}
			if W.Shape[0] != dirs || W.Shape[1] != nGates*H || W.Shape[2] != isz || R.Shape[0] != dirs || R.Shape[1] != nGates*H || R.Shape[2] != H {
				return fmt.Errorf("W shape %v / R shape %v do not match %d directions, hidden %d, input %d", W.Shape, R.Shape, dirs, H, isz)
			}
			xv, err := X.AsFloat64s()
			if err != nil {
				return err
			}
			wv, _ := W.AsFloat64s()
			rv, _ := R.AsFloat64s()
			get := func(i int, n int) ([]float64, error) {
				t := optIn(in, i)
				if t == nil {
					return nil, nil
				}
				v, err := t.AsFloat64s()
				if err != nil {
					return nil, err
				}
				if len(v) != n {
					return nil, fmt.Errorf("input %d has %d elements, want %d", i, len(v), n)
				}
				return v, nil
			}
			bv, err := get(3, dirs*2*nGates*H)
			if err != nil {
				return err
			}
			var lens []int64
			if t := optIn(in, 4); t != nil {
				if lens, err = t.AsInt64s(); err != nil {
					return err
				}
				if len(lens) != batch {
					return fmt.Errorf("sequence_lens has %d entries, want %d", len(lens), batch)
				}
			}
			h0, err := get(5, dirs*batch*H)
			if err != nil {
				return err
			}
			var c0, pv []float64
			if kind == kindLSTM {
				if c0, err = get(6, dirs*batch*H); err != nil {
					return err
				}
				if pv, err = get(7, dirs*3*H); err != nil {
					return err
				}
			}
			xAt := func(t, bb, i int) float64 {
				if layout == 1 {
					return xv[(bb*seq+t)*isz+i]
				}
				return xv[(t*batch+bb)*isz+i]
			}
			Y := make([]float64, seq*dirs*batch*H)
			Yh := make([]float64, dirs*batch*H)
			Yc := make([]float64, dirs*batch*H)
			gates := make([]float64, nGates*H)
			for d := 0; d < dirs; d++ {
				reverse := dir == "reverse" || d == 1
				Wd := wv[d*nGates*H*isz : (d+1)*nGates*H*isz]
				Rd := rv[d*nGates*H*H : (d+1)*nGates*H*H]
				var Wb, Rb []float64
				if bv != nil {
					Wb = bv[d*2*nGates*H : d*2*nGates*H+nGates*H]
					Rb = bv[d*2*nGates*H+nGates*H : (d+1)*2*nGates*H]
				}
				f := acts[d*nAct]
				var g, hAct actFn
				if nAct > 1 {
					g = acts[d*nAct+1]
				}
				if nAct > 2 {
					hAct = acts[d*nAct+2]
				}
				for bb := 0; bb < batch; bb++ {
					h := make([]float64, H)
					c := make([]float64, H)
					if h0 != nil {
						copy(h, h0[(d*batch+bb)*H:])
					}
					if c0 != nil {
						copy(c, c0[(d*batch+bb)*H:])
					}
					L := seq
					if lens != nil {
						L = int(lens[bb])
						if L < 0 || L > seq {
							return fmt.Errorf("sequence length %d is out of range", L)
						}
					}
					for step := 0; step < L; step++ {
						t := step
						if reverse {
							t = L - 1 - step
						}
						// gates = x W^T + Wb (+ h R^T + Rb, except GRU's h gate)
						for j := 0; j < nGates*H; j++ {
							s := 0.0
							for i := 0; i < isz; i++ {
								s += xAt(t, bb, i) * Wd[j*isz+i]
							}
							if Wb != nil {
								s += Wb[j]
							}
							gates[j] = s
						}
						rh := func(j int, hv []float64) float64 {
							s := 0.0
							for i := 0; i < H; i++ {
								s += hv[i] * Rd[j*H+i]
							}
							if Rb != nil {
								s += Rb[j]
							}
							return s
						}
						cl := func(x float64) float64 {
							if hasClip {
								return math.Min(math.Max(x, -clip), clip)
							}
							return x
						}
						nh := make([]float64, H)
						switch kind {
						case kindRNN:
							for j := 0; j < H; j++ {
								nh[j] = f(cl(gates[j] + rh(j, h)))
							}
						case kindGRU:
							z := make([]float64, H)
							r := make([]float64, H)
							for j := 0; j < H; j++ {
								z[j] = f(cl(gates[j] + rh(j, h)))
								r[j] = f(cl(gates[H+j] + rh(H+j, h)))
							}
							rhv := make([]float64, H)
							for j := 0; j < H; j++ {
								rhv[j] = r[j] * h[j]
							}
							for j := 0; j < H; j++ {
								var ht float64
								if lbr {
									ht = g(cl(gates[2*H+j] + r[j]*rh(2*H+j, h)))
								} else {
									ht = g(cl(gates[2*H+j] + rh(2*H+j, rhv)))
								}
								nh[j] = (1-z[j])*ht + z[j]*h[j]
							}
						case kindLSTM:
							nc := make([]float64, H)
							for j := 0; j < H; j++ {
								pi, po, pf := 0.0, 0.0, 0.0
								if pv != nil {
									pi, po, pf = pv[d*3*H+j], pv[d*3*H+H+j], pv[d*3*H+2*H+j]
								}
								it := f(cl(gates[j] + rh(j, h) + pi*c[j]))
								ft := f(cl(gates[2*H+j] + rh(2*H+j, h) + pf*c[j]))
								ct := g(cl(gates[3*H+j] + rh(3*H+j, h)))
								nc[j] = ft*c[j] + it*ct
								ot := f(cl(gates[H+j] + rh(H+j, h) + po*nc[j]))
								nh[j] = ot * hAct(nc[j])
							}
							c = nc
						}
						h = nh
						for j := 0; j < H; j++ {
							Y[((t*dirs+d)*batch+bb)*H+j] = h[j]
						}
					}
					copy(Yh[(d*batch+bb)*H:], h)
					copy(Yc[(d*batch+bb)*H:], c)
				}
			}
			if len(out) > 0 {
				yshape := []int{seq, dirs, batch, H}
				yv := Y
				if layout == 1 {
					yshape = []int{batch, seq, dirs, H}
					yv = make([]float64, len(Y))
					for t := 0; t < seq; t++ {
						for d := 0; d < dirs; d++ {
							for bb := 0; bb < batch; bb++ {
								copy(yv[((bb*seq+t)*dirs+d)*H:((bb*seq+t)*dirs+d+1)*H], Y[((t*dirs+d)*batch+bb)*H:])
							}
						}
					}
				}
				o := rc.Alloc(X.DType, yshape)
				storeFloat64s(o, yv)
				out[0] = o
			}
			hshape := []int{dirs, batch, H}
			if layout == 1 {
				hshape = []int{batch, dirs, H}
			}
			tr := func(v []float64) []float64 {
				if layout == 0 {
					return v
				}
				r := make([]float64, len(v))
				for d := 0; d < dirs; d++ {
					for bb := 0; bb < batch; bb++ {
						copy(r[(bb*dirs+d)*H:(bb*dirs+d+1)*H], v[(d*batch+bb)*H:])
					}
				}
				return r
			}
			if len(out) > 1 {
				o := rc.Alloc(X.DType, hshape)
				storeFloat64s(o, tr(Yh))
				out[1] = o
			}
			if len(out) > 2 {
				o := rc.Alloc(X.DType, hshape)
				storeFloat64s(o, tr(Yc))
				out[2] = o
			}
			return nil
		}, nil
	}
}

func init() {
	Register(
		OpDef{Name: "RNN", Since: 7, Build: buildRNN(kindRNN)},
		OpDef{Name: "GRU", Since: 7, Build: buildRNN(kindGRU)},
		OpDef{Name: "LSTM", Since: 7, Build: buildRNN(kindLSTM)},
	)
}
