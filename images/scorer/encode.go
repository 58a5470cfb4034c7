package scorer

import (
	"encoding/json"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/mlfleet/mlfleet/images/onnx"
)

// namedTensor is one model output.
type namedTensor struct {
	name string
	t    *onnx.Tensor
}

// result is what a backend returns for a batch: model outputs (onnx) or one
// JSON value per row (exec).
type result struct {
	n      int
	outs   []namedTensor
	labels []string          // scoring.outputLabels
	raw    []json.RawMessage // exec: the child's result per row
}

// per is the number of elements per row of a tensor with n rows.
func per(t *onnx.Tensor, n int) int {
	if n == 0 {
		return 0
	}
	return t.Len() / n
}

// appendRows writes the rows of res as a JSON array of per-row values.
func appendRows(buf []byte, res *result) []byte {
	buf = append(buf, '[')
	for i := 0; i < res.n; i++ {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = appendRow(buf, res, i)
	}
	return append(buf, ']')
}

// appendRow writes row i: for exec the child's value, for onnx an object
// keyed by output name. A float output with one value per output label also
// gets "<name>_by_label": {label: value}. A sequence of maps (ZipMap) gives
// an object per row.
func appendRow(buf []byte, res *result, i int) []byte {
	if res.raw != nil {
		return append(buf, res.raw[i]...)
	}
	buf = append(buf, '{')
	for k, o := range res.outs {
		if k > 0 {
			buf = append(buf, ',')
		}
		buf = appendString(buf, o.name)
		buf = append(buf, ':')
		t := o.t
		if t.Kind == onnx.KindSequence {
			buf = appendMap(buf, t.Seq[i])
			continue
		}
		p := per(t, res.n)
		if len(t.Shape) == 1 {
			buf = appendElem(buf, t, i)
		} else {
			buf = appendNested(buf, t, t.Shape[1:], i*p)
		}
		if len(res.labels) > 0 && p == len(res.labels) && t.DType.IsFloat() {
			buf = append(buf, ',')
			buf = appendString(buf, o.name+"_by_label")
			buf = append(buf, ":{"...)
			for j, l := range res.labels {
				if j > 0 {
					buf = append(buf, ',')
				}
				buf = appendString(buf, l)
				buf = append(buf, ':')
				buf = appendElem(buf, t, i*p+j)
			}
			buf = append(buf, '}')
		}
	}
	return append(buf, '}')
}

// appendNested writes the elements from off on as nested arrays of shape.
func appendNested(buf []byte, t *onnx.Tensor, shape []int, off int) []byte {
	buf = append(buf, '[')
	stride := 1
	for _, d := range shape[1:] {
		stride *= d
	}
	for j := 0; j < shape[0]; j++ {
		if j > 0 {
			buf = append(buf, ',')
		}
		if len(shape) == 1 {
			buf = appendElem(buf, t, off+j)
		} else {
			buf = appendNested(buf, t, shape[1:], off+j*stride)
		}
	}
	return append(buf, ']')
}

// appendMap writes a map value as a JSON object.
func appendMap(buf []byte, m *onnx.Tensor) []byte {
	buf = append(buf, '{')
	for j := 0; j < m.Keys.Len(); j++ {
		if j > 0 {
			buf = append(buf, ',')
		}
		buf = appendString(buf, mapKey(m.Keys, j))
		buf = append(buf, ':')
		buf = appendElem(buf, m.Values, j)
	}
	return append(buf, '}')
}

func mapKey(keys *onnx.Tensor, j int) string {
	if s := keys.Strings(); s != nil {
		return s[j]
	}
	if v := keys.Int64s(); v != nil {
		return strconv.FormatInt(v[j], 10)
	}
	var b []byte
	return string(appendElem(b, keys, j))
}

// appendElem writes element i of a tensor; non-finite floats as null.
func appendElem(buf []byte, t *onnx.Tensor, i int) []byte {
	switch d := t.Data.(type) {
	case []float32:
		return appendFloat(buf, float64(d[i]), 32)
	case []float64:
		return appendFloat(buf, d[i], 64)
	case []int64:
		return strconv.AppendInt(buf, d[i], 10)
	case []int32:
		return strconv.AppendInt(buf, int64(d[i]), 10)
	case []int16:
		return strconv.AppendInt(buf, int64(d[i]), 10)
	case []int8:
		return strconv.AppendInt(buf, int64(d[i]), 10)
	case []uint64:
		return strconv.AppendUint(buf, d[i], 10)
	case []uint32:
		return strconv.AppendUint(buf, uint64(d[i]), 10)
	case []uint16:
		return strconv.AppendUint(buf, uint64(d[i]), 10)
	case []uint8:
		return strconv.AppendUint(buf, uint64(d[i]), 10)
	case []bool:
		return strconv.AppendBool(buf, d[i])
	case []string:
		return appendString(buf, d[i])
	}
	return append(buf, "null"...)
}

func appendFloat(buf []byte, f float64, bits int) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(buf, "null"...)
	}
	return strconv.AppendFloat(buf, f, 'g', -1, bits)
}

// appendString writes s as a JSON string.
func appendString(buf []byte, s string) []byte {
	const hex = "0123456789abcdef"
	buf = append(buf, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				buf = append(buf, '\\', c)
			case c < 0x20 || c == '<' || c == '>' || c == '&':
				buf = append(buf, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				buf = append(buf, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			buf = append(buf, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			buf = append(buf, `\u202`...)
			buf = append(buf, hex[r&0xf])
		default:
			buf = append(buf, s[i:i+size]...)
		}
		i += size
	}
	return append(buf, '"')
}

// v2DataType is the Open Inference Protocol name of a tensor element type.
func v2DataType(d onnx.DType) string {
	switch d {
	case onnx.Bool:
		return "BOOL"
	case onnx.Uint8:
		return "UINT8"
	case onnx.Uint16:
		return "UINT16"
	case onnx.Uint32:
		return "UINT32"
	case onnx.Uint64:
		return "UINT64"
	case onnx.Int8:
		return "INT8"
	case onnx.Int16:
		return "INT16"
	case onnx.Int32:
		return "INT32"
	case onnx.Int64:
		return "INT64"
	case onnx.Float16:
		return "FP16"
	case onnx.Float:
		return "FP32"
	case onnx.Double:
		return "FP64"
	case onnx.String:
		return "BYTES"
	}
	return "BYTES"
}

// appendV2Outputs writes res as Open Inference Protocol outputs: tensors
// as they are; sequences of maps, and exec results, as BYTES tensors [N]
// holding each row's JSON text (exec results that are all numbers as FP64).
func appendV2Outputs(buf []byte, res *result) []byte {
	buf = append(buf, '[')
	if res.raw != nil {
		allNum := true
		for _, r := range res.raw {
			if len(r) == 0 || !(r[0] == '-' || r[0] >= '0' && r[0] <= '9') {
				allNum = false
				break
			}
		}
		buf = append(buf, `{"name":"result","datatype":"`...)
		if allNum {
			buf = append(buf, "FP64"...)
		} else {
			buf = append(buf, "BYTES"...)
		}
		buf = append(buf, `","shape":[`...)
		buf = strconv.AppendInt(buf, int64(res.n), 10)
		buf = append(buf, `],"data":[`...)
		for i, r := range res.raw {
			if i > 0 {
				buf = append(buf, ',')
			}
			if allNum {
				buf = append(buf, r...)
			} else {
				buf = appendString(buf, string(r))
			}
		}
		return append(buf, "]}]"...)
	}
	for k, o := range res.outs {
		if k > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, `{"name":`...)
		buf = appendString(buf, o.name)
		t := o.t
		if t.Kind == onnx.KindSequence {
			buf = append(buf, `,"datatype":"BYTES","shape":[`...)
			buf = strconv.AppendInt(buf, int64(len(t.Seq)), 10)
			buf = append(buf, `],"data":[`...)
			var tmp []byte
			for i, m := range t.Seq {
				if i > 0 {
					buf = append(buf, ',')
				}
				tmp = appendMap(tmp[:0], m)
				buf = appendString(buf, string(tmp))
			}
			buf = append(buf, "]}"...)
			continue
		}
		buf = append(buf, `,"datatype":"`...)
		buf = append(buf, v2DataType(t.DType)...)
		buf = append(buf, `","shape":[`...)
		for j, d := range t.Shape {
			if j > 0 {
				buf = append(buf, ',')
			}
			buf = strconv.AppendInt(buf, int64(d), 10)
		}
		buf = append(buf, `],"data":[`...)
		for j := 0; j < t.Len(); j++ {
			if j > 0 {
				buf = append(buf, ',')
			}
			buf = appendElem(buf, t, j)
		}
		buf = append(buf, "]}"...)
	}
	return append(buf, ']')
}
