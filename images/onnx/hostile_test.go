package onnx

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// mutate returns a copy of t with every element replaced by v (converted).
func mutate(t *Tensor, v float64) *Tensor {
	c := t.Clone()
	switch d := c.Data.(type) {
	case []float32:
		for i := range d {
			d[i] = float32(v)
		}
	case []float64:
		for i := range d {
			d[i] = v
		}
	case []bool:
		for i := range d {
			d[i] = v != 0
		}
	case []string:
		for i := range d {
			d[i] = fmt.Sprint(v)
		}
	default:
		iv := make([]int64, c.Len())
		for i := range iv {
			if math.IsNaN(v) {
				iv[i] = -1
			} else {
				iv[i] = int64(v)
			}
		}
		castInt64sInto(c, iv)
	}
	return c
}

// TestHostileInputs feeds every node-test model inputs of the right type and
// shape but hostile values (huge, negative, NaN, zero) and checks that runs
// either succeed or fail with a classified error, never with a kernel panic.
func TestHostileInputs(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	dir := nodeTestDir()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Skipf("ONNX node tests not installed: %v", err)
	}
	values := []float64{0, -1, 1 << 40, -(1 << 40), 3, math.NaN(), math.Inf(1)}
	var panics []string
	for _, e := range entries {
		d := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(filepath.Join(d, "model.onnx"))
		if err != nil {
			continue
		}
		m, err := Decode(b)
		if err != nil {
			continue
		}
		s, err := NewSession(m, WithMaxLoopIterations(1000))
		if err != nil {
			continue
		}
		inputs := map[string]*Tensor{}
		ok := true
		for i, info := range s.Inputs() {
			tb, err := os.ReadFile(filepath.Join(d, "test_data_set_0", fmt.Sprintf("input_%d.pb", i)))
			if err != nil {
				ok = false
				break
			}
			v, err := decodeTestValue(tb, info.Type)
			if err != nil || v.Kind != KindTensor {
				ok = false
				break
			}
			inputs[info.Name] = v
		}
		if !ok {
			continue
		}
		for _, v := range values {
			for name := range inputs {
				mutated := map[string]*Tensor{}
				for k, t := range inputs {
					mutated[k] = t
				}
				mutated[name] = mutate(inputs[name], v)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := s.Run(ctx, mutated)
				cancel()
				if err != nil && (strings.Contains(err.Error(), "internal error") || errors.Is(err, context.DeadlineExceeded)) {
					panics = append(panics, fmt.Sprintf("%s input %q=%v: %v", e.Name(), name, v, firstLine(err.Error())))
				}
			}
		}
	}
	for _, p := range panics {
		t.Error(p)
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
