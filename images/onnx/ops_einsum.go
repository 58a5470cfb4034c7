package onnx

import (
	"fmt"
	"sort"
	"strings"
)

// Einsum, by direct summation over all labels (fine for the small
// contractions seen in exported models).

// einsumTerm parses one operand's subscripts into labels; ellipsis dims get
// labels -1, -2, ... counted from the right.
func einsumTerm(term string, rank int) ([]int, error) {
	var labels []int
	ell := strings.Index(term, "...")
	letters := strings.ReplaceAll(term, "...", "")
	for _, r := range letters {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return nil, fmt.Errorf("invalid subscript %q", r)
		}
	}
	if ell < 0 {
		if rank >= 0 && len(letters) != rank {
			return nil, fmt.Errorf("subscripts %q have %d labels for rank %d", term, len(letters), rank)
		}
		for _, r := range letters {
			labels = append(labels, int(r))
		}
		return labels, nil
	}
	ne := rank - len(letters)
	if rank < 0 {
		ne = -1 // output: filled by caller
	}
	if rank >= 0 && ne < 0 {
		return nil, fmt.Errorf("subscripts %q have more labels than rank %d", term, rank)
	}
	for _, r := range term[:ell] {
		labels = append(labels, int(r))
	}
	for i := ne; i >= 1; i-- {
		labels = append(labels, -i)
	}
	if ne < 0 {
		labels = append(labels, 0) // placeholder for the ellipsis
	}
	for _, r := range term[ell+3:] {
		labels = append(labels, int(r))
	}
	return labels, nil
}

func buildEinsum(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(1, 1<<10)
	eq := strings.ReplaceAll(b.AttrString("equation", ""), " ", "")
	if eq == "" {
		return nil, fmt.Errorf("attribute equation is required")
	}
	lhs, rhs, explicit := strings.Cut(eq, "->")
	terms := strings.Split(lhs, ",")
	if len(terms) != b.NumInputs() {
		return nil, fmt.Errorf("equation %q has %d operands, the node %d inputs", eq, len(terms), b.NumInputs())
	}
	return func(rc *RunContext, in, out []*Tensor) error {
		dims := map[int]int{}
		opLabels := make([][]int, len(in))
		maxEll := 0
		counts := map[int]int{}
		for i, t := range in {
			l, err := einsumTerm(terms[i], len(t.Shape))
			if err != nil {
				return err
			}
			opLabels[i] = l
			seen := map[int]bool{}
			for k, lab := range l {
				d := t.Shape[k]
				if lab < 0 {
					maxEll = max(maxEll, -lab)
				}
				if old, ok := dims[lab]; ok && old != d {
					if lab < 0 && (old == 1 || d == 1) {
						dims[lab] = max(old, d)
					} else {
						return fmt.Errorf("label %q has sizes %d and %d", rune(lab), old, d)
					}
				} else if !ok {
					dims[lab] = d
				}
				if !seen[lab] {
					counts[lab]++
					seen[lab] = true
				}
			}
		}
		var outLabels []int
		if explicit {
			l, err := einsumTerm(rhs, -1)
			if err != nil {
				return err
			}
			for _, lab := range l {
				if lab == 0 {
					for i := maxEll; i >= 1; i-- {
						outLabels = append(outLabels, -i)
					}
					continue
				}
				if _, ok := dims[lab]; !ok {
					return fmt.Errorf("output label %q is not in any input", rune(lab))
				}
				outLabels = append(outLabels, lab)
			}
		} else {
			for i := maxEll; i >= 1; i-- {
				outLabels = append(outLabels, -i)
			}
			var once []int
			for lab, c := range counts {
				if lab > 0 && c == 1 {
					// a label repeated inside one operand is summed, not kept
					n := 0
					for _, l := range opLabels {
						for _, x := range l {
							if x == lab {
								n++
							}
						}
					}
					if n == 1 {
						once = append(once, lab)
					}
				}
			}
			sort.Ints(once)
			outLabels = append(outLabels, once...)
		}
		inOut := map[int]bool{}
		for _, l := range outLabels {
			inOut[l] = true
		}
		all := append([]int(nil), outLabels...)
		for lab := range dims {
			if !inOut[lab] {
				all = append(all, lab)
			}
		}
		sort.Ints(all[len(outLabels):])
		pos := map[int]int{}
		for i, l := range all {
			pos[l] = i
		}
		// per operand: stride of each label position in all
		strides := make([][]int, len(in))
		vals := make([][]float64, len(in))
		for i, t := range in {
			st := stridesOf(t.Shape)
			s := make([]int, len(all))
			for k, lab := range opLabels[i] {
				if t.Shape[k] == 1 && dims[lab] != 1 {
					continue // broadcast ellipsis dim
				}
				s[pos[lab]] += st[k]
			}
			strides[i] = s
			v, err := t.AsFloat64s()
			if err != nil {
				return err
			}
			vals[i] = v
		}
		oshape := make([]int, len(outLabels))
		for i, l := range outLabels {
			oshape[i] = dims[l]
		}
		full := make([]int, len(all))
		for i, l := range all {
			full[i] = dims[l]
		}
		total := checkAlloc(full)
		res := make([]float64, checkAlloc(oshape))
		ctr := make([]int, len(all))
		offs := make([]int, len(in))
		inner := shapeSize(full[len(outLabels):])
		for p := 0; p < total; p++ {
			prod := 1.0
			for i := range in {
				prod *= vals[i][offs[i]]
			}
			res[p/max(inner, 1)] += prod
			for d := len(all) - 1; d >= 0; d-- {
				ctr[d]++
				for i := range offs {
					offs[i] += strides[i][d]
				}
				if ctr[d] < full[d] {
					break
				}
				for i := range offs {
					offs[i] -= strides[i][d] * full[d]
				}
				ctr[d] = 0
			}
		}
		o := rc.Alloc(in[0].DType, oshape)
		storeFloat64s(o, res)
		out[0] = o
		return nil
	}, nil
}

func init() {
	Register(OpDef{Name: "Einsum", Since: 12, Build: buildEinsum})
}
