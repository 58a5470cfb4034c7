// Package modelfile recognizes uploaded model files and checks them without
// loading them into memory: an ONNX file is walked as a protobuf stream, its
// weights skipped over, and what it declares (inputs, outputs, opsets,
// operators) is returned. It is what lets the cloud accept a 1 GB model with
// a few MB of memory.
package modelfile

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/mlfleet/mlfleet/shared/errclass"
	"github.com/mlfleet/mlfleet/shared/manifest"
)

// Formats.
const (
	ONNX = "onnx"
	File = "file" // any other file: stored and served, not interpreted
)

// Info is what an ONNX file declares.
type Info struct {
	IRVersion int64
	Producer  string
	Opsets    map[string]int64 // domain ("" = ai.onnx) -> version
	Ops       []string         // distinct "domain:op" of the graph's nodes, sorted
	Inputs    []manifest.Field // graph inputs that are not initializers
	Outputs   []manifest.Field
}

// maxField bounds a length-delimited field we keep in memory (names, small
// messages); weights are skipped, never kept.
const maxField = 16 << 20

// InspectONNX reads an ONNX ModelProto from r. It returns an
// errclass.InvalidArgument error if r is not a parseable ONNX model.
func InspectONNX(r io.Reader) (*Info, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	info := &Info{Opsets: map[string]int64{}}
	sawGraph := false
	err := walk(br, -1, func(num int, wt int, d *decoder) error {
		switch {
		case num == 1 && wt == 0:
			v, err := d.varint()
			info.IRVersion = int64(v)
			return err
		case num == 2 && wt == 2:
			b, err := d.bytes()
			info.Producer = string(b)
			return err
		case num == 7 && wt == 2:
			sawGraph = true
			n, err := d.length()
			if err != nil {
				return err
			}
			return inspectGraph(d, n, info)
		case num == 8 && wt == 2:
			b, err := d.bytes()
			if err != nil {
				return err
			}
			dom, ver, err := opset(b)
			if err != nil {
				return err
			}
			info.Opsets[dom] = ver
			return nil
		}
		return d.skip(wt)
	})
	if err != nil {
		return nil, &errclass.Error{Class: errclass.InvalidArgument, Field: "format", Msg: "not a valid ONNX model", Err: err}
	}
	if !sawGraph || info.IRVersion == 0 {
		return nil, errclass.Invalid("format", "not a valid ONNX model: no ir_version or graph")
	}
	if len(info.Opsets) == 0 {
		// Required since IR version 3; also what makes a file cut after
		// its graph (opset_import is written last) fail instead of passing.
		if info.IRVersion >= 3 {
			return nil, errclass.Invalid("opset_import", "not a valid ONNX model: ir_version %d without opset_import", info.IRVersion)
		}
		info.Opsets[""] = 1
	}
	return info, nil
}

func inspectGraph(d *decoder, n int64, info *Info) error {
	inits := map[string]bool{}
	var inputs []manifest.Field
	ops := map[string]bool{}
	err := walk(d.r, n, func(num, wt int, d *decoder) error {
		if wt != 2 {
			return d.skip(wt)
		}
		switch num {
		case 1: // node: streamed, its attributes (which may hold big tensors) skipped
			n, err := d.length()
			if err != nil {
				return err
			}
			op, err := nodeOp(d.r, n)
			if err != nil {
				return err
			}
			ops[op] = true
		case 5: // initializer: keep its name, skip its data
			n, err := d.length()
			if err != nil {
				return err
			}
			return walk(d.r, n, func(num, wt int, d *decoder) error {
				if num == 8 && wt == 2 {
					b, err := d.bytes()
					inits[string(b)] = true
					return err
				}
				return d.skip(wt)
			})
		case 15: // sparse_initializer: its name is that of its values tensor
			n, err := d.length()
			if err != nil {
				return err
			}
			return walk(d.r, n, func(num, wt int, d *decoder) error {
				if num != 1 || wt != 2 {
					return d.skip(wt)
				}
				n, err := d.length()
				if err != nil {
					return err
				}
				return walk(d.r, n, func(num, wt int, d *decoder) error {
					if num == 8 && wt == 2 {
						b, err := d.bytes()
						inits[string(b)] = true
						return err
					}
					return d.skip(wt)
				})
			})
		case 11, 12: // input, output
			b, err := d.bytes()
			if err != nil {
				return err
			}
			f, err := valueInfo(b)
			if err != nil {
				return err
			}
			if num == 11 {
				inputs = append(inputs, f)
			} else {
				info.Outputs = append(info.Outputs, f)
			}
		default:
			return d.skip(wt)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("graph: %w", err)
	}
	for _, f := range inputs {
		if !inits[f.Name] {
			info.Inputs = append(info.Inputs, f)
		}
	}
	for op := range ops {
		info.Ops = append(info.Ops, op)
	}
	sort.Strings(info.Ops)
	return nil
}

// nodeOp reads a NodeProto of n bytes from r and returns its "domain:op".
func nodeOp(r *bufio.Reader, n int64) (string, error) {
	var op, domain string
	err := walk(r, n, func(num, wt int, d *decoder) error {
		if wt == 2 && (num == 4 || num == 7) {
			v, err := d.bytes()
			if num == 4 {
				op = string(v)
			} else {
				domain = string(v)
			}
			return err
		}
		return d.skip(wt)
	})
	if err == nil && op == "" {
		err = errors.New("node without op_type")
	}
	return domain + ":" + op, err
}

func opset(b []byte) (string, int64, error) {
	var dom string
	var ver int64
	err := walkBytes(b, func(num, wt int, d *decoder) error {
		switch {
		case num == 1 && wt == 2:
			v, err := d.bytes()
			dom = string(v)
			return err
		case num == 2 && wt == 0:
			v, err := d.varint()
			ver = int64(v)
			return err
		}
		return d.skip(wt)
	})
	if dom == "ai.onnx" {
		dom = ""
	}
	return dom, ver, err
}

// elemTypes maps ONNX TensorProto.DataType to manifest types.
var elemTypes = map[uint64]manifest.DataType{
	1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64",
	8: "string", 9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64",
}

// valueInfo turns a ValueInfoProto into a schema field. The first dimension
// of a tensor is the batch (rows), so the field's per-row shape is the rest.
func valueInfo(b []byte) (manifest.Field, error) {
	var f manifest.Field
	var typ []byte
	err := walkBytes(b, func(num, wt int, d *decoder) error {
		switch {
		case num == 1 && wt == 2:
			v, err := d.bytes()
			f.Name = string(v)
			return err
		case num == 2 && wt == 2:
			v, err := d.bytes()
			typ = v
			return err
		}
		return d.skip(wt)
	})
	if err != nil {
		return f, err
	}
	f.Type = "float32"
	var dims []int
	kind := ""
	err = walkBytes(typ, func(num, wt int, d *decoder) error {
		if wt != 2 {
			return d.skip(wt)
		}
		v, err := d.bytes()
		if err != nil {
			return err
		}
		switch num {
		case 1: // tensor_type
			kind = "tensor"
			return walkBytes(v, func(num, wt int, d *decoder) error {
				switch {
				case num == 1 && wt == 0:
					et, err := d.varint()
					if t, ok := elemTypes[et]; ok {
						f.Type = t
					}
					return err
				case num == 2 && wt == 2:
					sh, err := d.bytes()
					if err != nil {
						return err
					}
					dims, err = shape(sh)
					return err
				}
				return d.skip(wt)
			})
		case 4:
			kind = "sequence"
		case 5:
			kind = "map"
		}
		return nil
	})
	if err != nil {
		return f, err
	}
	switch kind {
	case "sequence", "map":
		// e.g. ZipMap's output: a sequence of maps; described as a JSON object per row.
		f.Type = "string"
		f.Description = "onnx " + kind
	default:
		if len(dims) > 1 {
			f.Shape = dims[1:]
		}
	}
	return f, nil
}

func shape(b []byte) ([]int, error) {
	var dims []int
	err := walkBytes(b, func(num, wt int, d *decoder) error {
		if num != 1 || wt != 2 {
			return d.skip(wt)
		}
		v, err := d.bytes()
		if err != nil {
			return err
		}
		dim := -1
		err = walkBytes(v, func(num, wt int, d *decoder) error {
			if num == 1 && wt == 0 {
				x, err := d.varint()
				if int64(x) > 0 && x < 1<<31 {
					dim = int(x)
				}
				return err
			}
			return d.skip(wt)
		})
		dims = append(dims, dim)
		return err
	})
	return dims, err
}
