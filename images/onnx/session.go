package onnx

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"

	"github.com/mlfleet/mlfleet/shared/errclass"
)

// IOInfo describes one input or output of a graph.
type IOInfo struct {
	Name  string
	Kind  Kind  // tensor, sequence or map
	DType DType // element type for tensors; Undefined when unknown
	// Shape has -1 for dynamic dimensions; nil when the rank is unknown.
	Shape []int
	// DimNames has the symbolic name of each dynamic dimension ("" if none).
	DimNames []string
	// Type is the full declared type (for sequences and maps).
	Type *TypeInfo
	// Optional is set for graph inputs that have an initializer as default.
	Optional bool
}

func ioInfo(vi *ValueInfo) IOInfo {
	io := IOInfo{Name: vi.Name, Type: vi.Type}
	if vi.Type == nil {
		return io
	}
	io.Kind = vi.Type.Kind
	if vi.Type.Kind == KindTensor {
		io.DType = vi.Type.Elem
		if vi.Type.HasShape {
			io.Shape = make([]int, len(vi.Type.Shape))
			io.DimNames = make([]string, len(vi.Type.Shape))
			for i, d := range vi.Type.Shape {
				io.Shape[i] = int(d.Value)
				io.DimNames[i] = d.Param
			}
		}
	}
	return io
}

// Option configures a session.
type Option func(*sessionConfig)

type sessionConfig struct {
	noFold  bool
	noFuse  bool // tests: keep MatMul/Add/Relu chains as separate steps
	maxLoop int
}

// WithMaxLoopIterations sets how many iterations a Loop node may run before
// the run fails (DefaultMaxLoopIterations when unset or not positive).
func WithMaxLoopIterations(n int) Option { return func(c *sessionConfig) { c.maxLoop = n } }

// WithoutConstantFolding keeps nodes whose inputs are all constant as
// run-time steps instead of evaluating them at load.
func WithoutConstantFolding() Option { return func(c *sessionConfig) { c.noFold = true } }

// Session is a model ready to run. It is safe for concurrent use.
type Session struct {
	model   *Model
	inputs  []IOInfo
	outputs []IOInfo

	numVals   int
	consts    []constVal
	inputIDs  []int // per inputs[i]
	inputDefs []*Tensor
	outputIDs []int
	steps     []step

	pool sync.Pool // of *runState
}

type constVal struct {
	id int
	t  *Tensor
}

type step struct {
	node    *Node
	name    string
	kernel  Kernel
	in, out []int // value ids; -1 for omitted
	release []int // values whose last use is this step
}

type runState struct {
	vals []*Tensor
	ar   *arena
	rc   RunContext // reused by each run of the state
	in   []*Tensor
	out  []*Tensor
}

// opsetOf returns the opset a model imports for a domain, or 0.
func opsetOf(m *Model, domain string) int {
	domain = normDomain(domain)
	for _, o := range m.OpsetImports {
		if normDomain(o.Domain) == domain {
			return int(o.Version)
		}
	}
	return 0
}

// NewSession checks and plans a model. It refuses, with an error naming the
// node, any operator not supported at the model's opset and any invalid
// attribute. Errors are classified InvalidArgument.
func NewSession(m *Model, opts ...Option) (*Session, error) {
	if m == nil || m.Graph == nil {
		return nil, errclass.Invalid("graph", "new session: the model has no graph")
	}
	var cfg sessionConfig
	for _, o := range opts {
		o(&cfg)
	}
	s := &Session{model: m}
	if err := s.plan(m.Graph, cfg); err != nil {
		var ue *UnsupportedError
		if errors.As(err, &ue) {
			return nil, &errclass.Error{Class: errclass.InvalidArgument, Field: "graph.node", Err: err}
		}
		if errclass.ClassOf(err) != errclass.Unknown {
			return nil, err
		}
		return nil, errclass.Wrap(errclass.InvalidArgument, err, "new session")
	}
	return s, nil
}

func (s *Session) plan(g *Graph, cfg sessionConfig) error {
	ids := map[string]int{}
	types := map[string]*TypeInfo{}
	newID := func(name string) int {
		id := s.numVals
		s.numVals++
		ids[name] = id
		return id
	}
	for _, vi := range g.ValueInfo {
		types[vi.Name] = vi.Type
	}
	for _, vi := range g.Outputs {
		types[vi.Name] = vi.Type
	}
	constOf := map[int]*Tensor{}
	inits := map[string]*Tensor{}
	for _, init := range g.Initializers {
		if init.Name == "" {
			return errclass.Invalid("graph.initializer", "an initializer has no name")
		}
		if _, dup := inits[init.Name]; dup {
			return errclass.Invalid("graph.initializer", "initializer %q is defined twice", init.Name)
		}
		inits[init.Name] = init.Tensor
	}
	for _, vi := range g.Inputs {
		if vi.Name == "" {
			return errclass.Invalid("graph.input", "a graph input has no name")
		}
		if _, dup := ids[vi.Name]; dup {
			return errclass.Invalid("graph.input", "graph input %q is declared twice", vi.Name)
		}
		types[vi.Name] = vi.Type
		id := newID(vi.Name)
		info := ioInfo(vi)
		def := inits[vi.Name]
		if def != nil {
			info.Optional = true
		}
		if vi.Type != nil && vi.Type.Kind == KindTensor && !vi.Type.Elem.Supported() {
			return errclass.Invalid("graph.input", "graph input %q has element type %s, which is not supported", vi.Name, vi.Type.Elem)
		}
		s.inputs = append(s.inputs, info)
		s.inputIDs = append(s.inputIDs, id)
		s.inputDefs = append(s.inputDefs, def)
	}
	for _, init := range g.Initializers {
		if _, isInput := ids[init.Name]; isInput {
			continue
		}
		id := newID(init.Name)
		s.consts = append(s.consts, constVal{id, init.Tensor})
		constOf[id] = init.Tensor
	}

	// Topological order (Kahn), keeping file order among ready nodes.
	producer := map[string]int{}
	for i, n := range g.Nodes {
		for _, o := range n.Outputs {
			if o == "" {
				continue
			}
			if _, dup := producer[o]; dup {
				return errclass.Invalid("graph.node", "value %q is produced by two nodes", o)
			}
			if _, isIn := ids[o]; isIn {
				return errclass.Invalid("graph.node", "node %q overwrites graph input or initializer %q", nodeName(n, i), o)
			}
			producer[o] = i
		}
	}
	indeg := make([]int, len(g.Nodes))
	users := make([][]int, len(g.Nodes))
	implicit := make([][]string, len(g.Nodes))
	for i, n := range g.Nodes {
		implicit[i] = nodeFreeVars(n)
		deps := append(append([]string(nil), n.Inputs...), implicit[i]...)
		for _, in := range deps {
			if in == "" {
				continue
			}
			if p, ok := producer[in]; ok {
				indeg[i]++
				users[p] = append(users[p], i)
			} else if _, ok := ids[in]; !ok {
				return errclass.Invalid("graph.node", "node %q reads %q, which no node, input or initializer provides", nodeName(n, i), in)
			}
		}
	}
	var order []int
	ready := []int{}
	for i := range g.Nodes {
		if indeg[i] == 0 {
			ready = append(ready, i)
		}
	}
	for len(ready) > 0 {
		i := ready[0]
		ready = ready[1:]
		order = append(order, i)
		for _, u := range users[i] {
			indeg[u]--
			if indeg[u] == 0 {
				ready = append(ready, u)
			}
		}
	}
	if len(order) != len(g.Nodes) {
		return errclass.Invalid("graph.node", "the graph has a cycle")
	}

	foldCtx := &RunContext{}
	for _, i := range order {
		n := g.Nodes[i]
		name := nodeName(n, i)
		opset := opsetOf(s.model, n.Domain)
		def, ok := lookupOp(n.Domain, n.OpType, opset)
		if !ok {
			return &UnsupportedError{Op: n.OpType, Domain: normDomain(n.Domain), Opset: opset, Node: name}
		}
		b := &NodeBuilder{Node: n, Opset: opset}
		st := step{node: n, name: name}
		allConst := true
		for _, in := range n.Inputs {
			if in == "" {
				st.in = append(st.in, -1)
				b.consts = append(b.consts, nil)
				b.inTyp = append(b.inTyp, nil)
				continue
			}
			id := ids[in]
			st.in = append(st.in, id)
			c := constOf[id]
			if c == nil {
				allConst = false
			}
			b.consts = append(b.consts, c)
			b.inTyp = append(b.inTyp, types[in])
		}
		for _, name := range implicit[i] {
			id := ids[name]
			st.in = append(st.in, id)
			c := constOf[id]
			if c == nil {
				allConst = false
			}
			b.consts = append(b.consts, c)
			b.inTyp = append(b.inTyp, types[name])
			b.implicit = append(b.implicit, name)
		}
		b.model, b.cfg = s.model, cfg
		k, err := def.Build(b)
		if err == nil {
			err = b.Err()
		}
		if err != nil {
			var ue *UnsupportedError
			if errors.As(err, &ue) {
				if ue.Op == "" { // made by Unsupported() in this node's Build
					ue.Op, ue.Domain, ue.Opset, ue.Node = n.OpType, normDomain(n.Domain), opset, name
				}
				return ue
			}
			return errclass.Wrap(errclass.InvalidArgument, err, "node %q (%s, opset %d)", name, n.OpType, opset)
		}
		st.kernel = k
		for _, o := range n.Outputs {
			if o == "" {
				st.out = append(st.out, -1)
				continue
			}
			st.out = append(st.out, newID(o))
		}
		if allConst && !cfg.noFold {
			in := make([]*Tensor, len(st.in))
			for j, id := range st.in {
				if id >= 0 {
					in[j] = constOf[id]
				}
			}
			out := make([]*Tensor, len(st.out))
			if err := safeKernel(k, foldCtx, in, out); err == nil {
				okAll := true
				for _, t := range out {
					if t == nil {
						okAll = false
					}
				}
				if okAll {
					for j, id := range st.out {
						if id >= 0 {
							constOf[id] = out[j]
							s.consts = append(s.consts, constVal{id, out[j]})
						}
					}
					continue
				}
			}
		}
		s.steps = append(s.steps, st)
	}

	for _, vi := range g.Outputs {
		id, ok := ids[vi.Name]
		if !ok {
			return errclass.Invalid("graph.output", "graph output %q is not produced by any node, input or initializer", vi.Name)
		}
		s.outputs = append(s.outputs, ioInfo(vi))
		s.outputIDs = append(s.outputIDs, id)
	}

	keep := make([]bool, s.numVals)
	for _, id := range s.outputIDs {
		keep[id] = true
	}
	if !cfg.noFuse {
		s.fuseDense(constOf, keep)
	}

	// Liveness: release each run-time value after its last use.
	last := make([]int, s.numVals)
	for i := range last {
		last[i] = -1
	}
	for si, st := range s.steps {
		for _, id := range st.in {
			if id >= 0 {
				last[id] = si
			}
		}
		for _, id := range st.out {
			if id >= 0 && last[id] < si {
				last[id] = si
			}
		}
	}
	for id, si := range last {
		if si >= 0 && !keep[id] {
			s.steps[si].release = append(s.steps[si].release, id)
		}
	}
	return nil
}

// graphFreeVars lists the names a graph reads (directly or in nested
// subgraphs) that it does not define itself: its outer-scope references.
func graphFreeVars(g *Graph) []string {
	defined := map[string]bool{}
	for _, vi := range g.Inputs {
		defined[vi.Name] = true
	}
	for _, t := range g.Initializers {
		defined[t.Name] = true
	}
	for _, n := range g.Nodes {
		for _, o := range n.Outputs {
			defined[o] = true
		}
	}
	var out []string
	seen := map[string]bool{}
	add := func(name string) {
		if name != "" && !defined[name] && !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
	}
	for _, n := range g.Nodes {
		for _, in := range n.Inputs {
			add(in)
		}
		for _, fv := range nodeFreeVars(n) {
			add(fv)
		}
	}
	return out
}

// nodeFreeVars lists the outer-scope names a node's graph attributes read.
func nodeFreeVars(n *Node) []string {
	var out []string
	seen := map[string]bool{}
	for _, a := range n.Attributes {
		gs := a.Graphs
		if a.G != nil {
			gs = append([]*Graph{a.G}, gs...)
		}
		for _, g := range gs {
			for _, fv := range graphFreeVars(g) {
				if !seen[fv] {
					seen[fv] = true
					out = append(out, fv)
				}
			}
		}
	}
	return out
}

func nodeName(n *Node, i int) string {
	if n.Name != "" {
		return n.Name
	}
	return fmt.Sprintf("#%d:%s", i, n.OpType)
}

func safeKernel(k Kernel, rc *RunContext, in, out []*Tensor) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("kernel panic: %v\n%s", r, debug.Stack())
		}
	}()
	return k(rc, in, out)
}

// Inputs describes the graph inputs (including those with initializer defaults, marked Optional).
func (s *Session) Inputs() []IOInfo { return copyIO(s.inputs) }

// Outputs describes the graph outputs.
func (s *Session) Outputs() []IOInfo { return copyIO(s.outputs) }

func copyIO(in []IOInfo) []IOInfo {
	out := make([]IOInfo, len(in))
	for i, io := range in {
		io.Shape = append([]int(nil), io.Shape...)
		io.DimNames = append([]string(nil), io.DimNames...)
		out[i] = io
	}
	return out
}

// Model returns the model the session runs.
func (s *Session) Model() *Model { return s.model }

// checkInput validates a caller's tensor against the declared input.
func checkInput(info IOInfo, t *Tensor) error {
	if t == nil {
		return errclass.Invalid(info.Name, "input %q is nil", info.Name)
	}
	if info.Type != nil && t.Kind != info.Kind {
		return errclass.Invalid(info.Name, "input %q is a %s, want a %s", info.Name, kindName(t.Kind), kindName(info.Kind))
	}
	if t.Kind == KindSequence {
		for i, e := range t.Seq {
			if e == nil || e.Kind != KindTensor {
				return errclass.Invalid(info.Name, "input %q: sequence element %d is not a tensor", info.Name, i)
			}
			if err := e.validate(); err != nil {
				return errclass.Invalid(info.Name, "input %q: sequence element %d: %v", info.Name, i, err)
			}
		}
		return nil
	}
	if t.Kind != KindTensor {
		return errclass.Invalid(info.Name, "input %q: maps are not supported as graph inputs", info.Name)
	}
	if err := t.validate(); err != nil {
		return errclass.Invalid(info.Name, "input %q: %v", info.Name, err)
	}
	if info.DType != Undefined && t.DType != info.DType {
		return errclass.Invalid(info.Name, "input %q has type %s, want %s", info.Name, t.DType, info.DType)
	}
	if info.Shape != nil {
		if len(t.Shape) != len(info.Shape) {
			return errclass.Invalid(info.Name, "input %q has shape %v (rank %d), want rank %d (shape %v)", info.Name, t.Shape, len(t.Shape), len(info.Shape), info.Shape)
		}
		for i, d := range info.Shape {
			if d >= 0 && t.Shape[i] != d {
				return errclass.Invalid(info.Name, "input %q has shape %v, want dimension %d to be %d", info.Name, t.Shape, i, d)
			}
		}
	}
	return nil
}

// dataMatches reports whether data's Go type is the one dt is stored as.
func dataMatches(dt DType, data any) bool {
	switch data.(type) {
	case []float32:
		return dt == Float || dt == Float16 || dt == BFloat16
	case []float64:
		return dt == Double
	case []int8:
		return dt == Int8
	case []int16:
		return dt == Int16
	case []int32:
		return dt == Int32
	case []int64:
		return dt == Int64
	case []uint8:
		return dt == Uint8
	case []uint16:
		return dt == Uint16
	case []uint32:
		return dt == Uint32
	case []uint64:
		return dt == Uint64
	case []bool:
		return dt == Bool
	case []string:
		return dt == String
	}
	return false
}

func kindName(k Kind) string {
	switch k {
	case KindSequence:
		return "sequence"
	case KindMap:
		return "map"
	}
	return "tensor"
}

// validate checks that Data's Go type matches DType and its length the shape.
func (t *Tensor) validate() error {
	for _, d := range t.Shape {
		if d < 0 {
			return fmt.Errorf("negative dimension in shape %v", t.Shape)
		}
	}
	if !t.DType.Supported() {
		return fmt.Errorf("element type %s is not supported", t.DType)
	}
	if !dataMatches(t.DType, t.Data) {
		return fmt.Errorf("data is %T, want %T for %s", t.Data, makeData(t.DType, 0), t.DType)
	}
	n := 1
	for _, d := range t.Shape {
		if d > MaxTensorElements || (d != 0 && n > MaxTensorElements/d) {
			return fmt.Errorf("shape %v has more than %d elements", t.Shape, MaxTensorElements)
		}
		n *= d
	}
	if n != dataLen(t.Data) {
		return fmt.Errorf("shape %v needs %d elements, data has %d", t.Shape, n, dataLen(t.Data))
	}
	return nil
}

// Run runs the graph on inputs (by graph input name) and returns every graph
// output by name. The caller owns the returned tensors; the engine does not
// keep or modify the inputs.
func (s *Session) Run(ctx context.Context, inputs map[string]*Tensor) (map[string]*Tensor, error) {
	for name := range inputs {
		found := false
		for _, in := range s.inputs {
			if in.Name == name {
				found = true
				break
			}
		}
		if !found {
			return nil, errclass.Invalid(name, "unknown input %q", name)
		}
	}
	args := make([]*Tensor, len(s.inputs))
	for i, info := range s.inputs {
		t, ok := inputs[info.Name]
		if !ok || t == nil {
			if s.inputDefs[i] != nil {
				continue
			}
			return nil, errclass.Invalid(info.Name, "missing input %q", info.Name)
		}
		if err := checkInput(info, t); err != nil {
			return nil, err
		}
		args[i] = t
	}
	res, err := s.exec(ctx, args)
	if err != nil {
		return nil, err
	}
	out := make(map[string]*Tensor, len(res))
	for i, t := range res {
		out[s.outputs[i].Name] = t
	}
	return out, nil
}

// exec runs the graph on positional inputs (nil: the initializer default)
// without checking them, returning the outputs in graph order.
func (s *Session) exec(ctx context.Context, args []*Tensor) (out []*Tensor, err error) {
	st, _ := s.pool.Get().(*runState)
	if st == nil {
		st = &runState{vals: make([]*Tensor, s.numVals), ar: newArena()}
	}
	for i := range s.inputs {
		t := args[i]
		if t == nil {
			t = s.inputDefs[i]
		}
		if t == nil {
			clear(st.vals)
			s.pool.Put(st)
			return nil, errclass.Invalid(s.inputs[i].Name, "missing input %q", s.inputs[i].Name)
		}
		st.vals[s.inputIDs[i]] = t
	}
	for _, c := range s.consts {
		st.vals[c.id] = c.t
	}
	st.rc = RunContext{ctx: ctx, ar: st.ar}
	rc := &st.rc
	var cur *step
	defer func() {
		if r := recover(); r != nil {
			// The state may be inconsistent: drop it.
			name, op := "?", "?"
			if cur != nil {
				name, op = cur.name, cur.node.OpType
			}
			if le, ok := r.(allocLimitError); ok {
				out, err = nil, errclass.Wrap(errclass.InvalidArgument, le, "run: node %q (%s)", name, op)
				return
			}
			out, err = nil, fmt.Errorf("run: node %q (%s): internal error: %v", name, op, r)
		}
	}()
	for i := range s.steps {
		cur = &s.steps[i]
		if err := ctx.Err(); err != nil {
			s.recycle(st)
			return nil, fmt.Errorf("run: %w", err)
		}
		st.in = st.in[:0]
		for _, id := range cur.in {
			if id < 0 {
				st.in = append(st.in, nil)
			} else {
				st.in = append(st.in, st.vals[id])
			}
		}
		st.out = append(st.out[:0], make([]*Tensor, len(cur.out))...)
		if err := cur.kernel(rc, st.in, st.out); err != nil {
			s.recycle(st)
			if errclass.ClassOf(err) == errclass.Unknown {
				err = errclass.Wrap(errclass.InvalidArgument, err, "run: node %q (%s)", cur.name, cur.node.OpType)
			} else {
				err = fmt.Errorf("run: node %q (%s): %w", cur.name, cur.node.OpType, err)
			}
			return nil, err
		}
		for j, id := range cur.out {
			t := st.out[j]
			if id < 0 {
				st.ar.release(t)
				continue
			}
			if t == nil {
				s.recycle(st)
				return nil, fmt.Errorf("run: node %q (%s) did not set output %d", cur.name, cur.node.OpType, j)
			}
			for _, x := range st.in {
				if x == t {
					t = rc.Copy(t, nil) // a kernel returned its input
					break
				}
			}
			st.vals[id] = t
		}
		for _, id := range cur.release {
			st.ar.release(st.vals[id])
			st.vals[id] = nil
		}
	}
	cur = nil
	out = make([]*Tensor, len(s.outputIDs))
	for i, id := range s.outputIDs {
		t := st.vals[id]
		if t.arena == st.ar {
			t.arena = nil // the caller owns it now
		} else {
			t = t.Clone() // an input, a constant or a folded value
		}
		out[i] = t
	}
	s.recycle(st)
	return out, nil
}

func (s *Session) recycle(st *runState) {
	for i, t := range st.vals {
		if t != nil {
			st.ar.release(t)
			st.vals[i] = nil
		}
	}
	clear(st.in)
	clear(st.out)
	st.rc = RunContext{}
	s.pool.Put(st)
}
