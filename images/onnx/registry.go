package onnx

import (
	"fmt"
	"sort"
	"sync"
)

// Kernel runs one node. in holds the node's inputs in order (nil for an
// omitted optional input); the kernel sets every out[i] to a fresh value,
// normally allocated with rc.Alloc. A kernel must not return one of its inputs
// nor share an input's Data in an output, and must not keep references to
// inputs or outputs after it returns. Kernels are called concurrently from
// different runs and must not mutate state captured at build time.
type Kernel func(rc *RunContext, in []*Tensor, out []*Tensor) error

// OpDef registers one operator version.
type OpDef struct {
	Domain string // "" (or "ai.onnx") for the default domain, "ai.onnx.ml", ...
	Name   string // op_type
	// Since is the first opset version of Domain at which this definition
	// applies; it applies until the Since of the next definition of the same op.
	Since int
	// Build checks a node at session load time (attributes, input and output
	// counts, constant inputs) and returns its kernel. It runs once per node.
	Build func(b *NodeBuilder) (Kernel, error)
}

type opKey struct{ domain, name string }

var (
	regMu    sync.RWMutex
	registry = map[opKey][]OpDef{}
)

// normDomain maps the aliases of the default domain to "".
func normDomain(d string) string {
	if d == "ai.onnx" {
		return ""
	}
	return d
}

func displayDomain(d string) string {
	if d == "" {
		return "ai.onnx"
	}
	return d
}

// Register adds op definitions to the table; call it from init functions.
// It panics on a duplicate (domain, name, since) or a definition missing a
// name, Since or Build, since that is a programming error.
func Register(defs ...OpDef) {
	regMu.Lock()
	defer regMu.Unlock()
	for _, d := range defs {
		d.Domain = normDomain(d.Domain)
		if d.Name == "" || d.Since <= 0 || d.Build == nil {
			panic(fmt.Sprintf("onnx.Register: incomplete definition %q since %d", d.Name, d.Since))
		}
		k := opKey{d.Domain, d.Name}
		for _, e := range registry[k] {
			if e.Since == d.Since {
				panic(fmt.Sprintf("onnx.Register: %q (domain %q) since %d registered twice", d.Name, displayDomain(d.Domain), d.Since))
			}
		}
		list := append(registry[k], d)
		sort.Slice(list, func(i, j int) bool { return list[i].Since < list[j].Since })
		registry[k] = list
	}
}

// lookupOp finds the definition of an op that applies at opset.
func lookupOp(domain, name string, opset int) (OpDef, bool) {
	regMu.RLock()
	defer regMu.RUnlock()
	list := registry[opKey{normDomain(domain), name}]
	for i := len(list) - 1; i >= 0; i-- {
		if list[i].Since <= opset {
			return list[i], true
		}
	}
	return OpDef{}, false
}

// IsRegistered reports whether any version of an op is registered.
func IsRegistered(domain, name string) bool {
	regMu.RLock()
	defer regMu.RUnlock()
	return len(registry[opKey{normDomain(domain), name}]) > 0
}

// RegisteredOps lists "domain:name" of every registered op, sorted.
func RegisteredOps() []string {
	regMu.RLock()
	defer regMu.RUnlock()
	var out []string
	for k := range registry {
		out = append(out, displayDomain(k.domain)+":"+k.name)
	}
	sort.Strings(out)
	return out
}

// UnsupportedError reports an operator (or a use of it) that the engine
// cannot run. Sessions refuse such models at load time.
type UnsupportedError struct {
	Op, Domain, Node string
	Opset            int
	Detail           string // set when the op exists but this use of it is not supported
}

func (e *UnsupportedError) Error() string {
	if e.Detail != "" {
		return fmt.Sprintf("unsupported use of operator %q (domain %q, opset %d) at node %q: %s", e.Op, displayDomain(e.Domain), e.Opset, e.Node, e.Detail)
	}
	return fmt.Sprintf("unsupported operator %q (domain %q, opset %d) at node %q", e.Op, displayDomain(e.Domain), e.Opset, e.Node)
}

// Unsupported makes the error a Build function returns for a valid use of an
// op that this engine does not implement (an attribute value, a dtype).
func Unsupported(format string, args ...any) error {
	return &UnsupportedError{Detail: fmt.Sprintf(format, args...)}
}
