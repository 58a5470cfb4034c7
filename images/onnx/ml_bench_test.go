package onnx

// Benchmarks of the example models (examples/testdata) at 1 and 256 rows.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// repeatRows returns t with its rows (first dimension) cycled to n rows.
func repeatRows(t *Tensor, n int) *Tensor {
	if len(t.Shape) == 0 || t.Shape[0] == 0 {
		return t
	}
	rows := t.Shape[0]
	width := t.Len() / rows
	shape := append([]int{n}, t.Shape[1:]...)
	out := NewTensor(t.DType, shape...)
	idx := make([]int, n*width)
	for i := range idx {
		r, c := i/width, i%width
		idx[i] = (r%rows)*width + c
	}
	gatherData(out.Data, t.Data, idx)
	return out
}

func BenchmarkExampleModels(b *testing.B) {
	for _, name := range exampleModels(b) {
		data, err := os.ReadFile(filepath.Join(exampleDir, name+".onnx"))
		if err != nil {
			b.Fatal(err)
		}
		m, err := Decode(data)
		if err != nil {
			b.Fatal(err)
		}
		s, err := NewSession(m)
		var ue *UnsupportedError
		if errors.As(err, &ue) && ue.Domain != mlDomain {
			continue // a core op the engine does not have yet
		}
		if err != nil {
			b.Fatal(err)
		}
		_, inputs := loadExample(b, name)
		for _, rows := range []int{1, 256} {
			feed := map[string]*Tensor{}
			for k, v := range inputs {
				feed[k] = repeatRows(v, rows)
			}
			b.Run(fmt.Sprintf("%s/rows=%d", name, rows), func(b *testing.B) {
				ctx := context.Background()
				b.ReportAllocs()
				for b.Loop() {
					if _, err := s.Run(ctx, feed); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkDecode decodes (and inspects) each example model: the cost of
// loading a model in the scorer and of checking an upload in the cloud.
func BenchmarkDecode(b *testing.B) {
	for _, name := range exampleModels(b) {
		data, err := os.ReadFile(filepath.Join(exampleDir, name+".onnx"))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name+"/decode", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := Decode(data); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/inspect", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := Inspect(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
