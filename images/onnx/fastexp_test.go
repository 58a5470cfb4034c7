package onnx

import (
	"math"
	"testing"
)

func TestFastExpAccuracy(t *testing.T) {
	worst := 0.0
	check := func(x float64) {
		t.Helper()
		want := math.Exp(x)
		got := fastExp(x)
		buf := []float64{x}
		expInPlace(buf)
		if math.IsNaN(want) {
			if !math.IsNaN(got) || !math.IsNaN(buf[0]) {
				t.Fatalf("exp(%v) = %v, %v, want NaN", x, got, buf[0])
			}
			return
		}
		if got != buf[0] {
			t.Fatalf("exp(%v): fastExp %v, expInPlace %v differ", x, got, buf[0])
		}
		if want == 0 || math.IsInf(want, 0) {
			if got != want {
				t.Fatalf("exp(%v) = %v, want %v", x, got, want)
			}
			return
		}
		rel := math.Abs(got-want) / want
		worst = max(worst, rel)
		if rel > 1e-14 {
			t.Fatalf("exp(%v) = %v, want %v (relative error %g)", x, got, want, rel)
		}
	}
	for _, x := range []float64{0, -0.0, 1, -1, 1e-300, -1e-300, 0.5, -0.5, 700, -700, 708.9, -707.9, 709.5, -745, -746, 800, -800,
		math.Inf(1), math.Inf(-1), math.NaN(), math.Ln2 / 64, -math.Ln2 / 64, 88.7, -87.3, -103.9} {
		check(x)
	}
	for i := -200000; i <= 200000; i++ {
		check(float64(i) * 0.0035)
	}
	for i := 0; i < 100000; i++ {
		check(math.Sin(float64(i)) * 30)
	}
	t.Logf("worst relative error %g", worst)
}

func TestSoftmaxRowsF32(t *testing.T) {
	cases := []struct {
		name string
		dim  int
		x    []float32
	}{
		{"iris-like", 3, []float32{1.5, -2, 0.25, 30, 29.5, -80, 0, 0, 0}},
		{"wide", 7, func() []float32 {
			v := make([]float32, 7*50)
			for i := range v {
				v[i] = float32(math.Sin(float64(i)*0.91) * 40)
			}
			return v
		}()},
		{"infinities", 3, []float32{float32(math.Inf(-1)), 0, 1, float32(math.Inf(1)), 0, 1}},
		{"one column", 1, []float32{-3, 5}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rows := len(tc.x) / tc.dim
			got := make([]float32, len(tc.x))
			softmaxRowsF32(tc.x, got, rows, tc.dim)
			ref := make([]float32, len(tc.x))
			for r := 0; r < rows; r++ { // the general path with math.Exp
				row := tc.x[r*tc.dim : (r+1)*tc.dim]
				mx := math.Inf(-1)
				for _, v := range row {
					mx = math.Max(mx, float64(v))
				}
				var sum float64
				for j, v := range row {
					e := math.Exp(float64(v - float32(mx)))
					sum += e
					ref[r*tc.dim+j] = float32(e)
				}
				for j := range row {
					ref[r*tc.dim+j] *= float32(1 / sum)
				}
			}
			for i := range got {
				g, w := float64(got[i]), float64(ref[i])
				if math.IsNaN(w) != math.IsNaN(g) || math.Abs(g-w) > 2.5e-7*math.Abs(w) {
					t.Errorf("softmax[%d] = %v, want %v", i, g, w)
				}
			}
		})
	}
}

func BenchmarkExp(b *testing.B) {
	x := make([]float64, 256)
	for i := range x {
		x[i] = -float64(i) * 0.05
	}
	buf := make([]float64, len(x))
	b.Run("math.Exp", func(b *testing.B) {
		for b.Loop() {
			for i, v := range x {
				buf[i] = math.Exp(v)
			}
		}
	})
	b.Run("expInPlace", func(b *testing.B) {
		for b.Loop() {
			copy(buf, x)
			expInPlace(buf)
		}
	})
}

func TestReluBits(t *testing.T) {
	nan32 := float32(math.NaN())
	negNaN32 := math.Float32frombits(math.Float32bits(nan32) | 1<<31)
	in := []float32{-1, 0, float32(math.Copysign(0, -1)), 2.5, float32(math.Inf(1)), float32(math.Inf(-1)), nan32, negNaN32, 1e-45, -1e-45}
	// NaN gives 0, as the v > 0 test of the original kernel did.
	want := []float32{0, 0, 0, 2.5, float32(math.Inf(1)), 0, 0, 0, 1e-45, 0}
	got := make([]float32, len(in))
	reluF32(got, in)
	got64 := make([]float64, len(in))
	in64 := make([]float64, len(in))
	for i, v := range in {
		in64[i] = float64(v)
	}
	reluF64(got64, in64)
	for i := range in {
		w := want[i]
		for _, g := range []float64{float64(got[i]), got64[i]} {
			if w != w {
				if g == g {
					t.Errorf("relu(%v) = %v, want NaN", in[i], g)
				}
				continue
			}
			if g != float64(w) || math.Signbit(g) {
				t.Errorf("relu(%v) = %v, want %v", in[i], g, w)
			}
		}
	}
}
