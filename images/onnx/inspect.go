package onnx

import (
	"fmt"

	"github.com/mlfleet/mlfleet/shared/errclass"
)

// ModelInfo is what Inspect reports about a model file.
type ModelInfo struct {
	IRVersion       int64
	ProducerName    string
	ProducerVersion string
	Domain          string
	ModelVersion    int64
	DocString       string
	Opsets          []OpsetID
	Metadata        []KeyValue
	Inputs          []IOInfo // graph inputs without an initializer default
	Outputs         []IOInfo
	// Unsupported lists operators this engine cannot run ("domain:op@opset"),
	// empty when NewSession would accept every node's op.
	Unsupported []string
}

// Inspect checks that b is a parseable ONNX model with a graph, and reports
// its inputs, outputs, opsets and producer, plus the operators this engine
// does not support. It validates every tensor's size against its data but
// does not copy the weights, and does not build a session.
func Inspect(b []byte) (*ModelInfo, error) {
	m, err := decode(b, true)
	if err != nil {
		return nil, err
	}
	return InspectModel(m)
}

// InspectModel is Inspect on a model decoded with Decode.
func InspectModel(m *Model) (*ModelInfo, error) {
	if m == nil || m.Graph == nil {
		return nil, errclass.Invalid("graph", "inspect: the model has no graph")
	}
	info := &ModelInfo{
		IRVersion: m.IRVersion, ProducerName: m.ProducerName, ProducerVersion: m.ProducerVersion,
		Domain: m.Domain, ModelVersion: m.ModelVersion, DocString: m.DocString,
		Opsets: m.OpsetImports, Metadata: m.Metadata,
	}
	inits := map[string]bool{}
	for _, t := range m.Graph.Initializers {
		inits[t.Name] = true
	}
	for _, vi := range m.Graph.Inputs {
		if inits[vi.Name] {
			continue
		}
		info.Inputs = append(info.Inputs, ioInfo(vi))
	}
	for _, vi := range m.Graph.Outputs {
		info.Outputs = append(info.Outputs, ioInfo(vi))
	}
	if len(info.Outputs) == 0 {
		return nil, errclass.Invalid("graph.output", "inspect: the graph has no outputs")
	}
	seen := map[string]bool{}
	var walk func(g *Graph)
	walk = func(g *Graph) {
		for _, n := range g.Nodes {
			opset := opsetOf(m, n.Domain)
			if _, ok := lookupOp(n.Domain, n.OpType, opset); !ok {
				k := fmt.Sprintf("%s:%s@%d", displayDomain(normDomain(n.Domain)), n.OpType, opset)
				if !seen[k] {
					seen[k] = true
					info.Unsupported = append(info.Unsupported, k)
				}
			}
			for _, a := range n.Attributes {
				if a.G != nil {
					walk(a.G)
				}
				for _, sg := range a.Graphs {
					walk(sg)
				}
			}
		}
	}
	walk(m.Graph)
	return info, nil
}
