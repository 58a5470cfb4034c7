package onnx

import "fmt"

// Sequence operators. Elements stored in a sequence are private heap copies
// (never arena buffers), so sequences can outlive the values they were built from.

func seqOf(t *Tensor, what string) ([]*Tensor, error) {
	if t == nil || t.Kind != KindSequence {
		return nil, fmt.Errorf("%s must be a sequence", what)
	}
	return t.Seq, nil
}

func seqPos(t *Tensor, n int, insert bool) (int, error) {
	v, err := t.AsInt64s()
	if err != nil || len(v) != 1 {
		return 0, fmt.Errorf("position must be a one-element integer tensor")
	}
	p := v[0]
	hi := int64(n - 1)
	if insert {
		hi = int64(n)
	}
	if p < -int64(n) || p > hi {
		return 0, fmt.Errorf("position %d is out of range for a sequence of %d", p, n)
	}
	if p < 0 {
		p += int64(n)
	}
	return int(p), nil
}

func buildSequenceEmpty(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(0, 0)
	return func(rc *RunContext, in, out []*Tensor) error {
		out[0] = NewSequence()
		return nil
	}, nil
}

func buildSequenceConstruct(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(1, 1<<20)
	return func(rc *RunContext, in, out []*Tensor) error {
		elems := make([]*Tensor, len(in))
		for i, t := range in {
			if t.DType != in[0].DType {
				return fmt.Errorf("input %d has type %s, input 0 %s", i, t.DType, in[0].DType)
			}
			elems[i] = t.Clone()
		}
		out[0] = NewSequence(elems...)
		return nil
	}, nil
}

func buildSequenceInsert(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(2, 3)
	return func(rc *RunContext, in, out []*Tensor) error {
		s, err := seqOf(in[0], "input_sequence")
		if err != nil {
			return err
		}
		p := len(s)
		if t := optIn(in, 2); t != nil {
			if p, err = seqPos(t, len(s), true); err != nil {
				return err
			}
		}
		elems := make([]*Tensor, 0, len(s)+1)
		elems = append(elems, s[:p]...)
		elems = append(elems, in[1].Clone())
		elems = append(elems, s[p:]...)
		out[0] = NewSequence(elems...)
		return nil
	}, nil
}

func buildSequenceAt(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(2, 2)
	return func(rc *RunContext, in, out []*Tensor) error {
		s, err := seqOf(in[0], "input_sequence")
		if err != nil {
			return err
		}
		p, err := seqPos(in[1], len(s), false)
		if err != nil {
			return err
		}
		out[0] = rc.Copy(s[p], nil)
		return nil
	}, nil
}

func buildSequenceErase(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(1, 2)
	return func(rc *RunContext, in, out []*Tensor) error {
		s, err := seqOf(in[0], "input_sequence")
		if err != nil {
			return err
		}
		if len(s) == 0 {
			return fmt.Errorf("cannot erase from an empty sequence")
		}
		p := len(s) - 1
		if t := optIn(in, 1); t != nil {
			if p, err = seqPos(t, len(s), false); err != nil {
				return err
			}
		}
		elems := append(append([]*Tensor{}, s[:p]...), s[p+1:]...)
		out[0] = NewSequence(elems...)
		return nil
	}, nil
}

func buildSequenceLength(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(1, 1)
	return func(rc *RunContext, in, out []*Tensor) error {
		s, err := seqOf(in[0], "input_sequence")
		if err != nil {
			return err
		}
		o := rc.Alloc(Int64, []int{})
		o.Data.([]int64)[0] = int64(len(s))
		out[0] = o
		return nil
	}, nil
}

func buildSplitToSequence(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(1, 2)
	axis := b.AttrInt("axis", 0)
	keep := b.AttrInt("keepdims", 1) != 0
	return func(rc *RunContext, in, out []*Tensor) error {
		x := in[0]
		ax, err := normAxis(axis, len(x.Shape))
		if err != nil {
			return err
		}
		dim := x.Shape[ax]
		var sizes []int
		squeeze := false
		if t := optIn(in, 1); t != nil {
			v, err := t.AsInt64s()
			if err != nil {
				return err
			}
			if len(t.Shape) == 0 {
				if v[0] <= 0 {
					return fmt.Errorf("split %d must be positive", v[0])
				}
				for rem := dim; rem > 0; rem -= int(v[0]) {
					sizes = append(sizes, min(int(v[0]), rem))
				}
			} else {
				sum := 0
				for _, e := range v {
					if e < 0 {
						return fmt.Errorf("split has a negative size")
					}
					sizes = append(sizes, int(e))
					sum += int(e)
				}
				if sum != dim {
					return fmt.Errorf("split sizes add up to %d, axis has %d", sum, dim)
				}
			}
		} else {
			for i := 0; i < dim; i++ {
				sizes = append(sizes, 1)
			}
			squeeze = !keep
		}
		outer, inner := shapeSize(x.Shape[:ax]), shapeSize(x.Shape[ax+1:])
		var elems []*Tensor
		off := 0
		for _, sz := range sizes {
			shape := append([]int{}, x.Shape...)
			shape[ax] = sz
			e := NewTensor(x.DType, shape...)
			n := sz * inner
			for j := 0; j < outer; j++ {
				copyRange(e.Data, j*n, x.Data, j*dim*inner+off, n)
			}
			off += n
			if squeeze {
				e.Shape = append(append([]int{}, x.Shape[:ax]...), x.Shape[ax+1:]...)
			}
			elems = append(elems, e)
		}
		out[0] = NewSequence(elems...)
		return nil
	}, nil
}

func buildConcatFromSequence(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(1, 1)
	if !b.HasAttr("axis") {
		return nil, fmt.Errorf("attribute axis is required")
	}
	axis := b.AttrInt("axis", 0)
	newAxis := b.AttrInt("new_axis", 0) != 0
	concat, _ := buildConcat(&NodeBuilder{Node: &Node{Inputs: []string{"x"}, Attributes: []*Attribute{{Name: "axis", Type: AttrInt, I: axis}}}, Opset: 13})
	return func(rc *RunContext, in, out []*Tensor) error {
		s, err := seqOf(in[0], "input_sequence")
		if err != nil {
			return err
		}
		if len(s) == 0 {
			return fmt.Errorf("cannot concatenate an empty sequence")
		}
		parts := s
		if newAxis {
			parts = make([]*Tensor, len(s))
			r := len(s[0].Shape) + 1
			ax, err := normAxis(axis, r)
			if err != nil {
				return err
			}
			for i, t := range s {
				shape := append(append(append([]int{}, t.Shape[:min(ax, len(t.Shape))]...), 1), t.Shape[min(ax, len(t.Shape)):]...)
				parts[i] = &Tensor{DType: t.DType, Shape: shape, Data: t.Data}
			}
		}
		return concat(rc, parts, out)
	}, nil
}

func buildSequenceMap(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(1, 1<<20)
	body, err := b.Subgraph(b.AttrGraph("body"))
	if err != nil {
		return nil, fmt.Errorf("body: %w", err)
	}
	nIn := b.NumInputs()
	if body.NumInputs() != nIn || body.NumOutputs() != b.NumOutputs() {
		return nil, fmt.Errorf("body has %d inputs and %d outputs, want %d and %d", body.NumInputs(), body.NumOutputs(), nIn, b.NumOutputs())
	}
	return func(rc *RunContext, in, out []*Tensor) error {
		s, err := seqOf(in[0], "input_sequence")
		if err != nil {
			return err
		}
		for i := 1; i < nIn; i++ {
			if in[i].Kind == KindSequence && len(in[i].Seq) != len(s) {
				return fmt.Errorf("input %d has %d elements, input 0 has %d", i, len(in[i].Seq), len(s))
			}
		}
		results := make([][]*Tensor, len(out))
		args := make([]*Tensor, nIn)
		for k := range s {
			args[0] = s[k]
			for i := 1; i < nIn; i++ {
				if in[i].Kind == KindSequence {
					args[i] = in[i].Seq[k]
				} else {
					args[i] = in[i]
				}
			}
			res, err := body.Run(rc, args, b.Implicit(in))
			if err != nil {
				return err
			}
			for j, r := range res {
				results[j] = append(results[j], r)
			}
		}
		for j := range out {
			out[j] = NewSequence(results[j]...)
		}
		return nil
	}, nil
}

func init() {
	Register(
		OpDef{Name: "SequenceEmpty", Since: 11, Build: buildSequenceEmpty},
		OpDef{Name: "SequenceConstruct", Since: 11, Build: buildSequenceConstruct},
		OpDef{Name: "SequenceInsert", Since: 11, Build: buildSequenceInsert},
		OpDef{Name: "SequenceAt", Since: 11, Build: buildSequenceAt},
		OpDef{Name: "SequenceErase", Since: 11, Build: buildSequenceErase},
		OpDef{Name: "SequenceLength", Since: 11, Build: buildSequenceLength},
		OpDef{Name: "SplitToSequence", Since: 11, Build: buildSplitToSequence},
		OpDef{Name: "ConcatFromSequence", Since: 11, Build: buildConcatFromSequence},
		OpDef{Name: "SequenceMap", Since: 17, Build: buildSequenceMap},
	)
}
