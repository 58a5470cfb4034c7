package onnx

import (
	"context"
	"fmt"
	"testing"
)

func benchmarkMLP(b *testing.B, rows int) {
	const in, hidden, out = 32, 64, 4
	s := mustSession(b, mlpModel(in, hidden, out))
	x := make([]float32, rows*in)
	for i := range x {
		x[i] = float32(i%13) * 0.1
	}
	inputs := map[string]*Tensor{"x": FromFloat32(x, rows, in)}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Run(ctx, inputs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*rows), "ns/row")
}

func BenchmarkMLPRun(b *testing.B) {
	for _, rows := range []int{1, 256} {
		b.Run(fmt.Sprintf("rows=%d", rows), func(b *testing.B) { benchmarkMLP(b, rows) })
	}
}

func BenchmarkMLPRunParallel(b *testing.B) {
	const in, hidden, out = 32, 64, 4
	s := mustSession(b, mlpModel(in, hidden, out))
	x := make([]float32, in)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		inputs := map[string]*Tensor{"x": FromFloat32(x, 1, in)}
		for pb.Next() {
			if _, err := s.Run(context.Background(), inputs); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkCNNRun(b *testing.B) {
	const size = 32
	s := mustSession(b, cnnModel(size))
	x := make([]float32, 3*size*size)
	for i := range x {
		x[i] = float32(i%17) * 0.05
	}
	inputs := map[string]*Tensor{"x": FromFloat32(x, 1, 3, size, size)}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Run(context.Background(), inputs); err != nil {
			b.Fatal(err)
		}
	}
}
