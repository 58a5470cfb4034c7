package onnx

import (
	"fmt"
	"strings"
)

// String operators.

func buildStringNormalizer(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(1, 1)
	action := b.AttrString("case_change_action", "NONE")
	switch action {
	case "NONE", "LOWER", "UPPER":
	default:
		return nil, fmt.Errorf("attribute case_change_action=%q is not NONE, LOWER or UPPER", action)
	}
	sensitive := b.AttrInt("is_case_sensitive", 0) != 0
	stop := map[string]bool{}
	for _, w := range b.AttrStrings("stopwords", nil) {
		if !sensitive {
			w = strings.ToLower(w)
		}
		stop[w] = true
	}
	return func(rc *RunContext, in, out []*Tensor) error {
		x := in[0]
		s, ok := x.Data.([]string)
		if !ok {
			return fmt.Errorf("input must be a string tensor, got %s", x.DType)
		}
		if len(x.Shape) == 2 && x.Shape[0] != 1 || len(x.Shape) > 2 || len(x.Shape) == 0 {
			return fmt.Errorf("input shape %v must be [C] or [1, C]", x.Shape)
		}
		var keep []string
		for _, w := range s {
			k := w
			if !sensitive {
				k = strings.ToLower(w)
			}
			if stop[k] {
				continue
			}
			switch action {
			case "LOWER":
				w = strings.ToLower(w)
			case "UPPER":
				w = strings.ToUpper(w)
			}
			keep = append(keep, w)
		}
		if len(keep) == 0 {
			keep = []string{""}
		}
		shape := []int{len(keep)}
		if len(x.Shape) == 2 {
			shape = []int{1, len(keep)}
		}
		o := rc.Alloc(String, shape)
		copy(o.Data.([]string), keep)
		out[0] = o
		return nil
	}, nil
}

func buildTfIdfVectorizer(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(1, 1)
	minN := int(b.AttrInt("min_gram_length", 0))
	maxN := int(b.AttrInt("max_gram_length", 0))
	maxSkip := int(b.AttrInt("max_skip_count", 0))
	mode := b.AttrString("mode", "")
	counts := b.AttrInts("ngram_counts", nil)
	indexes := b.AttrInts("ngram_indexes", nil)
	poolI := b.AttrInts("pool_int64s", nil)
	poolS := b.AttrStrings("pool_strings", nil)
	weights := b.AttrFloats("weights", nil)
	if mode != "TF" && mode != "IDF" && mode != "TFIDF" {
		return nil, fmt.Errorf("attribute mode=%q is not TF, IDF or TFIDF", mode)
	}
	if minN < 1 || maxN < minN || maxSkip < 0 || len(counts) < maxN {
		return nil, fmt.Errorf("attributes min_gram_length=%d, max_gram_length=%d, max_skip_count=%d, ngram_counts=%v are inconsistent", minN, maxN, maxSkip, counts)
	}
	if (poolI == nil) == (poolS == nil) {
		return nil, fmt.Errorf("exactly one of pool_int64s and pool_strings must be set")
	}
	poolLen := len(poolI) + len(poolS)
	item := func(i int) string {
		if poolS != nil {
			return poolS[i]
		}
		return fmt.Sprint(poolI[i])
	}
	// key: n-gram items joined by \x00 -> output column
	grams := map[string]int{}
	k := 0
	outCols := 0
	for _, ix := range indexes {
		outCols = max(outCols, int(ix)+1)
	}
	for n := 1; n <= len(counts); n++ {
		start := int(counts[n-1])
		end := poolLen
		if n < len(counts) {
			end = int(counts[n])
		}
		if start < 0 || end > poolLen || start > end || (end-start)%n != 0 {
			return nil, fmt.Errorf("attribute ngram_counts %v does not fit a pool of %d", counts, poolLen)
		}
		for p := start; p < end; p += n {
			parts := make([]string, n)
			for j := range parts {
				parts[j] = item(p + j)
			}
			if k >= len(indexes) {
				return nil, fmt.Errorf("attribute ngram_indexes has %d entries, too few for the pool", len(indexes))
			}
			grams[strings.Join(parts, "\x00")] = int(indexes[k])
			k++
		}
	}
	if weights != nil && len(weights) < outCols {
		return nil, fmt.Errorf("attribute weights has %d entries, want %d", len(weights), outCols)
	}
	return func(rc *RunContext, in, out []*Tensor) error {
		x := in[0]
		var toks []string
		switch d := x.Data.(type) {
		case []string:
			toks = d
		case []int32, []int64:
			v, _ := x.AsInt64s()
			toks = make([]string, len(v))
			for i, e := range v {
				toks[i] = fmt.Sprint(e)
			}
		default:
			return fmt.Errorf("input type %s is not supported", x.DType)
		}
		rows, C := 1, 0
		var oshape []int
		switch len(x.Shape) {
		case 1:
			C = x.Shape[0]
			oshape = []int{outCols}
		case 2:
			rows, C = x.Shape[0], x.Shape[1]
			oshape = []int{rows, outCols}
		default:
			return fmt.Errorf("input shape %v must be 1-D or 2-D", x.Shape)
		}
		o := rc.Alloc(Float, oshape)
		od := o.Data.([]float32)
		parts := make([]string, maxN)
		for r := 0; r < rows; r++ {
			row := toks[r*C : (r+1)*C]
			cnt := od[r*outCols : (r+1)*outCols]
			for n := minN; n <= maxN; n++ {
				skips := maxSkip
				if n == 1 {
					skips = 0
				}
				for sk := 0; sk <= skips; sk++ {
					span := (n-1)*(sk+1) + 1
					for i := 0; i+span <= len(row); i++ {
						for j := 0; j < n; j++ {
							parts[j] = row[i+j*(sk+1)]
						}
						if col, ok := grams[strings.Join(parts[:n], "\x00")]; ok {
							cnt[col]++
						}
					}
				}
			}
			for c := range cnt {
				w := float32(1)
				if weights != nil {
					w = weights[c]
				}
				switch mode {
				case "IDF":
					if cnt[c] > 0 {
						cnt[c] = w
					}
				case "TFIDF":
					cnt[c] *= w
				}
			}
		}
		out[0] = o
		return nil
	}, nil
}

func init() {
	Register(
		OpDef{Name: "StringNormalizer", Since: 10, Build: buildStringNormalizer},
		OpDef{Name: "TfIdfVectorizer", Since: 9, Build: buildTfIdfVectorizer},
	)
}
