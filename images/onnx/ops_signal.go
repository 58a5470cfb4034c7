package onnx

import (
	"fmt"
	"math"
)

// Signal processing: DFT, STFT, MelWeightMatrix (opset 17). The transforms
// are direct O(n^2) sums, adequate for the frame sizes of edge audio models.

// dft1 transforms n complex samples (re, im) into m outputs.
func dft1(re, im []float64, n, m int, inverse bool, outRe, outIm []float64) {
	sign := -1.0
	if inverse {
		sign = 1
	}
	for k := 0; k < m; k++ {
		var sr, si float64
		for t := 0; t < n; t++ {
			a := sign * 2 * math.Pi * float64(k*t%n) / float64(n)
			c, s := math.Cos(a), math.Sin(a)
			sr += re[t]*c - im[t]*s
			si += re[t]*s + im[t]*c
		}
		if inverse {
			sr /= float64(n)
			si /= float64(n)
		}
		outRe[k], outIm[k] = sr, si
	}
}

func buildDFT(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(1, 2)
	axis := b.AttrInt("axis", 1)
	inverse := b.AttrInt("inverse", 0) != 0
	onesided := b.AttrInt("onesided", 0) != 0
	return func(rc *RunContext, in, out []*Tensor) error {
		x := in[0]
		r := len(x.Shape)
		if r < 2 || (x.Shape[r-1] != 1 && x.Shape[r-1] != 2) {
			return fmt.Errorf("input shape %v must end in 1 (real) or 2 (complex)", x.Shape)
		}
		ax, err := normAxis(axis, r)
		if err != nil || ax == r-1 {
			return fmt.Errorf("axis %d is not a signal axis of shape %v", axis, x.Shape)
		}
		xv, err := x.AsFloat64s()
		if err != nil {
			return err
		}
		comp := x.Shape[r-1]
		n := x.Shape[ax]
		L := n
		if t := optIn(in, 1); t != nil {
			v, err := t.AsInt64s()
			if err != nil || len(v) != 1 || v[0] <= 0 {
				return fmt.Errorf("dft_length must be a positive scalar")
			}
			L = int(v[0])
		}
		m := L
		if onesided {
			m = L/2 + 1
		}
		outer := shapeSize(x.Shape[:ax])
		inner := shapeSize(x.Shape[ax+1 : r-1])
		oshape := append([]int{}, x.Shape...)
		oshape[ax] = m
		oshape[r-1] = 2
		res := make([]float64, checkAlloc(oshape))
		re, im := make([]float64, L), make([]float64, L)
		ore, oim := make([]float64, m), make([]float64, m)
		for o := 0; o < outer; o++ {
			for i := 0; i < inner; i++ {
				clear(re)
				clear(im)
				for t := 0; t < min(n, L); t++ {
					p := ((o*n+t)*inner + i) * comp
					re[t] = xv[p]
					if comp == 2 {
						im[t] = xv[p+1]
					}
				}
				dft1(re, im, L, m, inverse, ore, oim)
				for k := 0; k < m; k++ {
					p := ((o*m+k)*inner + i) * 2
					res[p], res[p+1] = ore[k], oim[k]
				}
			}
		}
		o := rc.Alloc(x.DType, oshape)
		storeFloat64s(o, res)
		out[0] = o
		return nil
	}, nil
}

func buildSTFT(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(2, 4)
	onesided := b.AttrInt("onesided", 1) != 0
	return func(rc *RunContext, in, out []*Tensor) error {
		x := in[0]
		if len(x.Shape) != 3 || (x.Shape[2] != 1 && x.Shape[2] != 2) {
			return fmt.Errorf("signal shape %v must be [batch, length, 1 or 2]", x.Shape)
		}
		stepV, err := in[1].AsInt64s()
		if err != nil || len(stepV) != 1 || stepV[0] <= 0 {
			return fmt.Errorf("frame_step must be a positive scalar")
		}
		step := int(min(stepV[0], 1<<30)) // any step past the signal's end gives one frame
		var win []float64
		if t := optIn(in, 2); t != nil {
			if win, err = t.AsFloat64s(); err != nil {
				return err
			}
		}
		flen := len(win)
		if t := optIn(in, 3); t != nil {
			v, err := t.AsInt64s()
			if err != nil || len(v) != 1 || v[0] <= 0 {
				return fmt.Errorf("frame_length must be a positive scalar")
			}
			flen = int(v[0])
		}
		if flen == 0 || (win != nil && len(win) != flen) {
			return fmt.Errorf("frame_length %d and window length %d disagree", flen, len(win))
		}
		B, n, comp := x.Shape[0], x.Shape[1], x.Shape[2]
		if n < flen {
			return fmt.Errorf("signal of %d samples is shorter than a frame of %d", n, flen)
		}
		frames := (n-flen)/step + 1
		m := flen
		if onesided {
			m = flen/2 + 1
		}
		xv, err := x.AsFloat64s()
		if err != nil {
			return err
		}
		oshape := []int{B, frames, m, 2}
		res := make([]float64, checkAlloc(oshape))
		re, im := make([]float64, flen), make([]float64, flen)
		ore, oim := make([]float64, m), make([]float64, m)
		for bb := 0; bb < B; bb++ {
			for f := 0; f < frames; f++ {
				for t := 0; t < flen; t++ {
					p := (bb*n + f*step + t) * comp
					w := 1.0
					if win != nil {
						w = win[t]
					}
					re[t] = xv[p] * w
					im[t] = 0
					if comp == 2 {
						im[t] = xv[p+1] * w
					}
				}
				dft1(re, im, flen, m, false, ore, oim)
				for k := 0; k < m; k++ {
					p := ((bb*frames+f)*m + k) * 2
					res[p], res[p+1] = ore[k], oim[k]
				}
			}
		}
		o := rc.Alloc(x.DType, oshape)
		storeFloat64s(o, res)
		out[0] = o
		return nil
	}, nil
}

func buildMelWeightMatrix(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(5, 5)
	dt := DType(b.AttrInt("output_datatype", int64(Float)))
	return func(rc *RunContext, in, out []*Tensor) error {
		var args [5]float64
		for i := range args {
			v, err := in[i].AsFloat64s()
			if err != nil || len(v) != 1 {
				return fmt.Errorf("input %d must be a scalar", i)
			}
			args[i] = v[0]
		}
		nMel, dftLen, rate, lo, hi := int(args[0]), int(args[1]), args[2], args[3], args[4]
		if nMel <= 0 || dftLen <= 0 || rate <= 0 || nMel > 1<<16 || dftLen > 1<<24 {
			return fmt.Errorf("num_mel_bins=%d, dft_length=%d and sample_rate=%v must be positive", nMel, dftLen, rate)
		}
		nSpec := dftLen/2 + 1
		toMel := func(hz float64) float64 { return 2595 * math.Log10(1+hz/700) }
		loMel, hiMel := toMel(lo), toMel(hi)
		step := (hiMel - loMel) / float64(nMel+2) // as the ONNX reference computes it
		bins := make([]int, nMel+2)
		for i := range bins {
			mel := float64(i)*step + loMel
			hz := 700 * (math.Pow(10, mel/2595) - 1)
			bins[i] = int(math.Floor(float64(dftLen+1) * hz / rate))
		}
		res := make([]float64, checkAlloc([]int{nSpec, nMel}))
		set := func(j, i int, v float64) {
			if j >= 0 && j < nSpec {
				res[j*nMel+i] = v
			}
		}
		for i := 0; i < nMel; i++ {
			l, c, h := bins[i], bins[i+1], bins[i+2]
			if c == l {
				set(c, i, 1)
			} else {
				for j := l; j <= c; j++ {
					set(j, i, float64(j-l)/float64(c-l))
				}
			}
			if h > c {
				for j := c; j < h; j++ {
					set(j, i, float64(h-j)/float64(h-c))
				}
			}
		}
		o := rc.Alloc(dt, []int{nSpec, nMel})
		storeFloat64s(o, res)
		out[0] = o
		return nil
	}, nil
}

func init() {
	Register(
		OpDef{Name: "DFT", Since: 17, Build: buildDFT},
		OpDef{Name: "STFT", Since: 17, Build: buildSTFT},
		OpDef{Name: "MelWeightMatrix", Since: 17, Build: buildMelWeightMatrix},
	)
}
