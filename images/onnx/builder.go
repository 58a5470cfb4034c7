package onnx

import (
	"fmt"
)

// NodeBuilder gives a Build function what it needs to check a node and make
// its kernel: the node, the opset it is built at, its attributes and the
// values of its inputs that are constant (initializers, Constant nodes).
//
// The Attr* accessors return a default when the attribute is absent and
// record an error (returned by Err, and checked after Build) when it has the
// wrong type, so that Build can read all attributes first and check once.
type NodeBuilder struct {
	Node  *Node
	Opset int

	consts []*Tensor // per input: the constant value, or nil
	inTyp  []*TypeInfo
	err    error
	used   map[string]bool

	implicit []string // outer-scope names the node's subgraphs read, appended to its inputs
	model    *Model
	cfg      sessionConfig
}

// Subgraph is a graph attribute (If branch, Loop or Scan body) planned as a
// session of its own. Its outer-scope references are passed in at run time.
type Subgraph struct {
	sess     *Session
	nDecl    int   // declared graph inputs
	outerPos []int // for each implicit input of the node, its position in sess inputs, or -1
}

// NumInputs is the number of declared inputs of the subgraph.
func (sg *Subgraph) NumInputs() int { return sg.nDecl }

// NumOutputs is the number of outputs of the subgraph.
func (sg *Subgraph) NumOutputs() int { return len(sg.sess.outputs) }

// Run runs the subgraph. in are its declared inputs; nodeIn is the node's
// full input list, whose values past its declared inputs are the implicit
// outer-scope values.
func (sg *Subgraph) Run(rc *RunContext, in []*Tensor, implicit []*Tensor) ([]*Tensor, error) {
	args := make([]*Tensor, len(sg.sess.inputs))
	copy(args, in)
	for i, p := range sg.outerPos {
		if p >= 0 && i < len(implicit) {
			args[p] = implicit[i]
		}
	}
	return sg.sess.exec(rc.Context(), args)
}

// Implicit returns the node's implicit (outer-scope) inputs from a kernel's in.
func (b *NodeBuilder) Implicit(in []*Tensor) []*Tensor {
	n := len(b.Node.Inputs)
	if n > len(in) {
		return nil
	}
	return in[n:]
}

// Subgraph plans a graph attribute of the node as a subgraph.
func (b *NodeBuilder) Subgraph(g *Graph) (*Subgraph, error) {
	if g == nil {
		return nil, fmt.Errorf("missing graph attribute")
	}
	sg := *g
	sg.Inputs = append([]*ValueInfo(nil), g.Inputs...)
	declared := map[string]bool{}
	for _, vi := range g.Inputs {
		declared[vi.Name] = true
	}
	for _, t := range g.Initializers {
		declared[t.Name] = true
	}
	free := map[string]bool{}
	for _, fv := range graphFreeVars(g) {
		free[fv] = true
	}
	out := &Subgraph{nDecl: len(g.Inputs)}
	for i, name := range b.implicit {
		if declared[name] || !free[name] {
			out.outerPos = append(out.outerPos, -1)
			continue
		}
		out.outerPos = append(out.outerPos, len(sg.Inputs))
		var typ *TypeInfo
		if i+len(b.Node.Inputs) < len(b.inTyp) {
			typ = b.inTyp[i+len(b.Node.Inputs)]
		}
		sg.Inputs = append(sg.Inputs, &ValueInfo{Name: name, Type: typ})
	}
	s := &Session{model: b.model}
	if err := s.plan(&sg, b.cfg); err != nil {
		return nil, fmt.Errorf("subgraph %q: %w", g.Name, err)
	}
	out.sess = s
	return out, nil
}

// NumInputs is the number of inputs the node names, including empty
// (omitted) trailing ones.
func (b *NodeBuilder) NumInputs() int { return len(b.Node.Inputs) }

// NumOutputs is the number of outputs the node names.
func (b *NodeBuilder) NumOutputs() int { return len(b.Node.Outputs) }

// HasInput reports whether input i is given (present and not "").
func (b *NodeBuilder) HasInput(i int) bool { return i < len(b.Node.Inputs) && b.Node.Inputs[i] != "" }

// HasOutput reports whether output i is requested.
func (b *NodeBuilder) HasOutput(i int) bool {
	return i < len(b.Node.Outputs) && b.Node.Outputs[i] != ""
}

// Const returns input i's value if it is a constant known at load time, else nil.
func (b *NodeBuilder) Const(i int) *Tensor {
	if i < len(b.consts) {
		return b.consts[i]
	}
	return nil
}

// InputType returns the declared type of input i if the graph declares it, else nil.
func (b *NodeBuilder) InputType(i int) *TypeInfo {
	if i < len(b.inTyp) {
		return b.inTyp[i]
	}
	return nil
}

// Errorf records a validation error (the first one wins) and returns it.
func (b *NodeBuilder) Errorf(format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	if b.err == nil {
		b.err = err
	}
	return err
}

// Err returns the first error recorded.
func (b *NodeBuilder) Err() error { return b.err }

// CheckInputs records an error unless the node has between min and max inputs.
func (b *NodeBuilder) CheckInputs(min, max int) {
	n := len(b.Node.Inputs)
	// trailing empty names are omitted optional inputs
	for n > 0 && b.Node.Inputs[n-1] == "" {
		n--
	}
	if n < min || n > max {
		if min == max {
			b.Errorf("has %d inputs, want %d", n, min)
		} else {
			b.Errorf("has %d inputs, want %d to %d", n, min, max)
		}
	}
	for i := 0; i < min && i < len(b.Node.Inputs); i++ {
		if b.Node.Inputs[i] == "" {
			b.Errorf("required input %d is empty", i)
		}
	}
}

// CheckOutputs records an error unless the node has between min and max outputs.
func (b *NodeBuilder) CheckOutputs(min, max int) {
	n := len(b.Node.Outputs)
	if n < min || n > max {
		b.Errorf("has %d outputs, want %d to %d", n, min, max)
	}
}

func (b *NodeBuilder) attr(name string, want ...AttrType) *Attribute {
	for _, a := range b.Node.Attributes {
		if a.Name != name {
			continue
		}
		if b.used == nil {
			b.used = map[string]bool{}
		}
		b.used[name] = true
		for _, w := range want {
			if a.Type == w {
				return a
			}
		}
		b.Errorf("attribute %q has type %s, want %s", name, a.Type, want[0])
		return nil
	}
	return nil
}

// HasAttr reports whether the attribute is set.
func (b *NodeBuilder) HasAttr(name string) bool {
	for _, a := range b.Node.Attributes {
		if a.Name == name {
			return true
		}
	}
	return false
}

// AttrFloat reads a float attribute.
func (b *NodeBuilder) AttrFloat(name string, def float32) float32 {
	if a := b.attr(name, AttrFloat); a != nil {
		return a.F
	}
	return def
}

// AttrInt reads an int attribute.
func (b *NodeBuilder) AttrInt(name string, def int64) int64 {
	if a := b.attr(name, AttrInt); a != nil {
		return a.I
	}
	return def
}

// AttrString reads a string attribute.
func (b *NodeBuilder) AttrString(name string, def string) string {
	if a := b.attr(name, AttrString); a != nil {
		return string(a.S)
	}
	return def
}

// AttrInts reads an ints attribute.
func (b *NodeBuilder) AttrInts(name string, def []int64) []int64 {
	if a := b.attr(name, AttrInts); a != nil {
		return a.Ints
	}
	return def
}

// AttrFloats reads a floats attribute.
func (b *NodeBuilder) AttrFloats(name string, def []float32) []float32 {
	if a := b.attr(name, AttrFloats); a != nil {
		return a.Floats
	}
	return def
}

// AttrStrings reads a strings attribute.
func (b *NodeBuilder) AttrStrings(name string, def []string) []string {
	if a := b.attr(name, AttrStrings); a != nil {
		out := make([]string, len(a.Strings))
		for i, s := range a.Strings {
			out[i] = string(s)
		}
		return out
	}
	return def
}

// AttrTensor reads a tensor attribute, or nil.
func (b *NodeBuilder) AttrTensor(name string) *Tensor {
	if a := b.attr(name, AttrTensor); a != nil && a.T != nil {
		return a.T.Tensor
	}
	return nil
}

// AttrGraph reads a graph attribute, or nil.
func (b *NodeBuilder) AttrGraph(name string) *Graph {
	if a := b.attr(name, AttrGraph); a != nil {
		return a.G
	}
	return nil
}
