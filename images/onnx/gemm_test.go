package onnx

import (
	"fmt"
	"math"
	"testing"
)

// gemmRef is c += a*b in float64.
func gemmRef(m, n, k int, a, b []float32, c []float64) {
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			s := 0.0
			for p := 0; p < k; p++ {
				s += float64(a[i*k+p]) * float64(b[p*n+j])
			}
			c[i*n+j] += s
		}
	}
}

func TestGemmKernels(t *testing.T) {
	kernels := []struct {
		name string
		f    func(m, n, k int, a, b, c []float32)
	}{
		{"gemmF32", gemmF32},
		{"gemmSmallF32", gemmSmallF32},
		{"gemmStreamF32", gemmStreamF32},
	}
	for _, dims := range [][3]int{{1, 1, 1}, {1, 3, 8}, {2, 4, 4}, {3, 5, 7}, {256, 16, 4}, {5, 0, 3}, {0, 4, 4}, {4, 4, 0}, {7, 130, 65}, {9, 9, 1}} {
		m, n, k := dims[0], dims[1], dims[2]
		a := make([]float32, m*k)
		b := make([]float32, k*n)
		for i := range a {
			a[i] = float32(math.Sin(float64(i)))
			if i%5 == 0 {
				a[i] = 0
			}
		}
		for i := range b {
			b[i] = float32(math.Cos(float64(i) * 0.7))
		}
		want := make([]float64, m*n)
		for i := range want {
			want[i] = float64(i % 3)
		}
		gemmRef(m, n, k, a, b, want)
		for _, kern := range kernels {
			t.Run(fmt.Sprintf("%s/%dx%dx%d", kern.name, m, n, k), func(t *testing.T) {
				c := make([]float32, m*n)
				for i := range c {
					c[i] = float32(i % 3)
				}
				kern.f(m, n, k, a, b, c)
				for i, v := range c {
					if math.Abs(float64(v)-want[i]) > 1e-5*float64(k+1) {
						t.Fatalf("c[%d] = %v, want %v", i, v, want[i])
					}
				}
			})
		}
	}
}

// BenchmarkGemm times the float32 kernels on the layer shapes of the iris
// MLP (256 rows) and a larger square product.
func BenchmarkGemm(b *testing.B) {
	kernels := []struct {
		name string
		f    func(m, n, k int, a, b, c []float32)
	}{
		{"small", gemmSmallF32},
		{"stream", gemmStreamF32},
	}
	for _, dims := range [][3]int{{256, 16, 4}, {256, 8, 16}, {256, 3, 8}, {256, 1, 16}, {256, 64, 32}, {128, 128, 128}} {
		m, n, k := dims[0], dims[1], dims[2]
		a := make([]float32, m*k)
		bb := make([]float32, k*n)
		c := make([]float32, m*n)
		for i := range a {
			a[i] = float32(i%7) - 3
		}
		for i := range bb {
			bb[i] = float32(i%5) * 0.1
		}
		for _, kern := range kernels {
			b.Run(fmt.Sprintf("%dx%dx%d/%s", m, n, k, kern.name), func(b *testing.B) {
				for b.Loop() {
					kern.f(m, n, k, a, bb, c)
				}
			})
		}
	}
}
