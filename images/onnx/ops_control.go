package onnx

import (
	"fmt"
)

// Control flow: If, Loop, Scan. Their graph attributes run as subgraphs
// (see NodeBuilder.Subgraph); outer-scope values arrive as implicit inputs.

// DefaultMaxLoopIterations bounds Loop (see WithMaxLoopIterations), so that a
// trip count taken from input data cannot keep a run busy indefinitely.
const DefaultMaxLoopIterations = 1 << 20

func buildIf(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(1, 1)
	thenG, err := b.Subgraph(b.AttrGraph("then_branch"))
	if err != nil {
		return nil, fmt.Errorf("then_branch: %w", err)
	}
	elseG, err := b.Subgraph(b.AttrGraph("else_branch"))
	if err != nil {
		return nil, fmt.Errorf("else_branch: %w", err)
	}
	if thenG.NumOutputs() != b.NumOutputs() || elseG.NumOutputs() != b.NumOutputs() {
		return nil, fmt.Errorf("branches have %d and %d outputs, the node %d", thenG.NumOutputs(), elseG.NumOutputs(), b.NumOutputs())
	}
	return func(rc *RunContext, in, out []*Tensor) error {
		c, ok := in[0].Data.([]bool)
		if !ok || len(c) != 1 {
			return fmt.Errorf("cond must be a one-element bool tensor")
		}
		g := elseG
		if c[0] {
			g = thenG
		}
		res, err := g.Run(rc, nil, b.Implicit(in))
		if err != nil {
			return err
		}
		copy(out, res)
		return nil
	}, nil
}

// stackTensors stacks same-shaped tensors along a new axis 0.
func stackTensors(rc *RunContext, ts []*Tensor, dt DType, elemShape []int) (*Tensor, error) {
	shape := append([]int{len(ts)}, elemShape...)
	o := rc.Alloc(dt, shape)
	n := shapeSize(elemShape)
	for i, t := range ts {
		if t.DType != dt || !sameShape(t.Shape, elemShape) {
			return nil, fmt.Errorf("scan output %d is %s%v, want %s%v", i, t.DType, t.Shape, dt, elemShape)
		}
		copyRange(o.Data, i*n, t.Data, 0, n)
	}
	return o, nil
}

func buildLoop(b *NodeBuilder) (Kernel, error) {
	if b.NumInputs() < 2 { // M and cond may be empty names, but must be there
		return nil, fmt.Errorf("has %d inputs, want at least 2 (M, cond)", b.NumInputs())
	}
	body, err := b.Subgraph(b.AttrGraph("body"))
	if err != nil {
		return nil, fmt.Errorf("body: %w", err)
	}
	nCarried := b.NumInputs() - 2
	if body.NumInputs() != nCarried+2 {
		return nil, fmt.Errorf("body has %d inputs, want %d", body.NumInputs(), nCarried+2)
	}
	limit := int64(b.cfg.maxLoop)
	if limit <= 0 {
		limit = DefaultMaxLoopIterations
	}
	nScan := body.NumOutputs() - 1 - nCarried
	if nScan < 0 || b.NumOutputs() != nCarried+nScan {
		return nil, fmt.Errorf("body outputs (%d) and node outputs (%d) do not match %d loop-carried values", body.NumOutputs(), b.NumOutputs(), nCarried)
	}
	return func(rc *RunContext, in, out []*Tensor) error {
		maxTrip, hasTrip := int64(0), false
		if in[0] != nil {
			v, err := in[0].AsInt64s()
			if err != nil || len(v) != 1 {
				return fmt.Errorf("M must be a one-element integer tensor")
			}
			maxTrip, hasTrip = v[0], true
		}
		cond := true
		if in[1] != nil {
			c, ok := in[1].Data.([]bool)
			if !ok || len(c) != 1 {
				return fmt.Errorf("cond must be a one-element bool tensor")
			}
			cond = c[0]
		}
		carried := make([]*Tensor, nCarried)
		for i := range carried {
			carried[i] = in[2+i]
		}
		scans := make([][]*Tensor, nScan)
		implicit := b.Implicit(in)
		args := make([]*Tensor, 2+nCarried)
		for it := int64(0); (!hasTrip || it < maxTrip) && cond; it++ {
			if err := rc.Context().Err(); err != nil {
				return err
			}
			if it >= limit {
				return fmt.Errorf("loop exceeds the limit of %d iterations", limit)
			}
			args[0] = &Tensor{DType: Int64, Shape: []int{}, Data: []int64{it}}
			args[1] = &Tensor{DType: Bool, Shape: []int{}, Data: []bool{cond}}
			copy(args[2:], carried)
			res, err := body.Run(rc, args, implicit)
			if err != nil {
				return err
			}
			c, ok := res[0].Data.([]bool)
			if !ok || len(c) != 1 {
				return fmt.Errorf("body cond output must be a one-element bool tensor")
			}
			cond = c[0]
			copy(carried, res[1:1+nCarried])
			for k := 0; k < nScan; k++ {
				scans[k] = append(scans[k], res[1+nCarried+k])
			}
		}
		for i, t := range carried {
			out[i] = rc.Copy(t, nil)
		}
		for k := 0; k < nScan; k++ {
			if len(scans[k]) == 0 {
				out[nCarried+k] = rc.Alloc(Float, []int{0})
				continue
			}
			t, err := stackTensors(rc, scans[k], scans[k][0].DType, scans[k][0].Shape)
			if err != nil {
				return err
			}
			out[nCarried+k] = t
		}
		return nil
	}, nil
}

func buildScan(b *NodeBuilder) (Kernel, error) {
	body, err := b.Subgraph(b.AttrGraph("body"))
	if err != nil {
		return nil, fmt.Errorf("body: %w", err)
	}
	nScanIn := int(b.AttrInt("num_scan_inputs", 0))
	nState := b.NumInputs() - nScanIn
	if nScanIn <= 0 || nState < 0 {
		return nil, fmt.Errorf("attribute num_scan_inputs=%d does not fit %d inputs", nScanIn, b.NumInputs())
	}
	nScanOut := b.NumOutputs() - nState
	if body.NumInputs() != nState+nScanIn || body.NumOutputs() != nState+nScanOut || nScanOut < 0 {
		return nil, fmt.Errorf("body inputs/outputs do not match %d states and %d scan inputs", nState, nScanIn)
	}
	inAxes := b.AttrInts("scan_input_axes", nil)
	inDirs := b.AttrInts("scan_input_directions", nil)
	outAxes := b.AttrInts("scan_output_axes", nil)
	outDirs := b.AttrInts("scan_output_directions", nil)
	return func(rc *RunContext, in, out []*Tensor) error {
		xs := in[nState : nState+nScanIn]
		axes := make([]int, nScanIn)
		seq := -1
		for i, x := range xs {
			a := int64(0)
			if inAxes != nil {
				a = inAxes[i]
			}
			ax, err := normAxis(a, len(x.Shape))
			if err != nil {
				return err
			}
			axes[i] = ax
			if seq >= 0 && x.Shape[ax] != seq {
				return fmt.Errorf("scan inputs have different lengths %d and %d", seq, x.Shape[ax])
			}
			seq = x.Shape[ax]
		}
		state := append([]*Tensor(nil), in[:nState]...)
		scans := make([][]*Tensor, nScanOut)
		implicit := b.Implicit(in)
		args := make([]*Tensor, nState+nScanIn)
		for t := 0; t < seq; t++ {
			copy(args, state)
			for i, x := range xs {
				k := t
				if inDirs != nil && inDirs[i] == 1 {
					k = seq - 1 - t
				}
				args[nState+i] = sliceAxis(x, axes[i], k)
			}
			res, err := body.Run(rc, args, implicit)
			if err != nil {
				return err
			}
			copy(state, res[:nState])
			for k := 0; k < nScanOut; k++ {
				scans[k] = append(scans[k], res[nState+k])
			}
		}
		for i, t := range state {
			out[i] = rc.Copy(t, nil)
		}
		for k := 0; k < nScanOut; k++ {
			list := scans[k]
			if outDirs != nil && outDirs[k] == 1 {
				for i, j := 0, len(list)-1; i < j; i, j = i+1, j-1 {
					list[i], list[j] = list[j], list[i]
				}
			}
			if len(list) == 0 {
				return fmt.Errorf("scan of length 0 is not supported")
			}
			st, err := stackTensors(rc, list, list[0].DType, list[0].Shape)
			if err != nil {
				return err
			}
			ax := int64(0)
			if outAxes != nil {
				ax = outAxes[k]
			}
			a, err := normAxis(ax, len(st.Shape))
			if err != nil {
				return err
			}
			if a != 0 {
				perm := make([]int, len(st.Shape))
				for i := range perm {
					perm[i] = i
				}
				// move axis 0 to position a
				copy(perm, append(append(append([]int{}, perm[1:a+1]...), 0), perm[a+1:]...))
				st = permute(rc, st, perm)
			}
			out[nState+k] = st
		}
		return nil
	}, nil
}

// sliceAxis returns x[..., k, ...] (axis removed) as a new tensor.
func sliceAxis(x *Tensor, axis, k int) *Tensor {
	outer, dim, inner := shapeSize(x.Shape[:axis]), x.Shape[axis], shapeSize(x.Shape[axis+1:])
	shape := append(append([]int{}, x.Shape[:axis]...), x.Shape[axis+1:]...)
	o := NewTensor(x.DType, shape...)
	for i := 0; i < outer; i++ {
		copyRange(o.Data, i*inner, x.Data, (i*dim+k)*inner, inner)
	}
	return o
}

// permute transposes x by perm (output dim i is input dim perm[i]).
func permute(rc *RunContext, x *Tensor, perm []int) *Tensor {
	st := stridesOf(x.Shape)
	shape := make([]int, len(perm))
	ost := make([]int, len(perm))
	for i, a := range perm {
		shape[i] = x.Shape[a]
		ost[i] = st[a]
	}
	return gatherNew(rc, x, shape, stridedIndex(shape, 0, ost))
}

func init() {
	Register(
		OpDef{Name: "If", Since: 1, Build: buildIf},
		OpDef{Name: "Loop", Since: 1, Build: buildLoop},
		OpDef{Name: "Scan", Since: 9, Build: buildScan},
	)
}
