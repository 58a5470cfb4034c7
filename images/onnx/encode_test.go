package onnx

import (
	"encoding/binary"
	"math"
)

// A minimal protobuf writer for building test models by hand.

type pbw struct{ b []byte }

func (p *pbw) key(f, typ int) { p.b = binary.AppendUvarint(p.b, uint64(f)<<3|uint64(typ)) }

func (p *pbw) varint(f int, v int64) *pbw {
	p.key(f, wireVarint)
	p.b = binary.AppendUvarint(p.b, uint64(v))
	return p
}

func (p *pbw) bytes(f int, v []byte) *pbw {
	p.key(f, wireBytes)
	p.b = binary.AppendUvarint(p.b, uint64(len(v)))
	p.b = append(p.b, v...)
	return p
}

func (p *pbw) str(f int, s string) *pbw { return p.bytes(f, []byte(s)) }

func (p *pbw) msg(f int, m *pbw) *pbw { return p.bytes(f, m.b) }

func (p *pbw) f32(f int, v float32) *pbw {
	p.key(f, wireFixed32)
	p.b = binary.LittleEndian.AppendUint32(p.b, math.Float32bits(v))
	return p
}

func (p *pbw) packedInts(f int, v []int64) *pbw {
	var q []byte
	for _, x := range v {
		q = binary.AppendUvarint(q, uint64(x))
	}
	return p.bytes(f, q)
}

func (p *pbw) packedF32(f int, v []float32) *pbw {
	var q []byte
	for _, x := range v {
		q = binary.LittleEndian.AppendUint32(q, math.Float32bits(x))
	}
	return p.bytes(f, q)
}

func (p *pbw) packedF64(f int, v []float64) *pbw {
	var q []byte
	for _, x := range v {
		q = binary.LittleEndian.AppendUint64(q, math.Float64bits(x))
	}
	return p.bytes(f, q)
}

// Message builders (field numbers from onnx.proto).

func pbTensorF32(name string, dims []int64, v []float32, raw bool) *pbw {
	t := &pbw{}
	t.packedInts(1, dims).varint(2, int64(Float)).str(8, name)
	if raw {
		var q []byte
		for _, x := range v {
			q = binary.LittleEndian.AppendUint32(q, math.Float32bits(x))
		}
		t.bytes(9, q)
	} else {
		t.packedF32(4, v)
	}
	return t
}

func pbTensorI64(name string, dims []int64, v []int64) *pbw {
	t := &pbw{}
	return t.packedInts(1, dims).varint(2, int64(Int64)).str(8, name).packedInts(7, v)
}

func pbValueInfo(name string, dt DType, dims ...any) *pbw {
	shape := &pbw{}
	for _, d := range dims {
		dim := &pbw{}
		switch v := d.(type) {
		case int:
			dim.varint(1, int64(v))
		case string:
			dim.str(2, v)
		}
		shape.msg(1, dim)
	}
	tt := (&pbw{}).varint(1, int64(dt)).msg(2, shape)
	typ := (&pbw{}).msg(1, tt)
	return (&pbw{}).str(1, name).msg(2, typ)
}

func pbNode(name, op string, in, out []string, attrs ...*pbw) *pbw {
	n := &pbw{}
	for _, s := range in {
		n.str(1, s)
	}
	for _, s := range out {
		n.str(2, s)
	}
	n.str(3, name).str(4, op)
	for _, a := range attrs {
		n.msg(5, a)
	}
	return n
}

func pbAttrInt(name string, v int64) *pbw {
	return (&pbw{}).str(1, name).varint(20, int64(AttrInt)).varint(3, v)
}

func pbAttrFloat(name string, v float32) *pbw {
	return (&pbw{}).str(1, name).varint(20, int64(AttrFloat)).f32(2, v)
}

func pbModel(opset int64, graph *pbw) *pbw {
	m := &pbw{}
	m.varint(1, 8).str(2, "mlfleet-test").str(3, "1")
	m.msg(8, (&pbw{}).str(1, "").varint(2, opset))
	m.msg(7, graph)
	return m
}

// mlpModel builds a Gemm-Relu-Gemm-Softmax MLP with in -> hidden -> out
// units and a dynamic batch dimension "N".
func mlpModel(in, hidden, out int) []byte {
	w1 := make([]float32, in*hidden)
	b1 := make([]float32, hidden)
	w2 := make([]float32, hidden*out)
	b2 := make([]float32, out)
	for i := range w1 {
		w1[i] = float32(math.Sin(float64(i))) * 0.1
	}
	for i := range b1 {
		b1[i] = float32(i%7) * 0.01
	}
	for i := range w2 {
		w2[i] = float32(math.Cos(float64(i))) * 0.1
	}
	for i := range b2 {
		b2[i] = float32(i) * 0.02
	}
	g := &pbw{}
	g.str(2, "mlp")
	g.msg(1, pbNode("fc1", "Gemm", []string{"x", "w1", "b1"}, []string{"h"}))
	g.msg(1, pbNode("act", "Relu", []string{"h"}, []string{"hr"}))
	g.msg(1, pbNode("fc2", "Gemm", []string{"hr", "w2", "b2"}, []string{"logits"}))
	g.msg(1, pbNode("sm", "Softmax", []string{"logits"}, []string{"probs"}, pbAttrInt("axis", 1)))
	g.msg(5, pbTensorF32("w1", []int64{int64(in), int64(hidden)}, w1, true))
	g.msg(5, pbTensorF32("b1", []int64{int64(hidden)}, b1, false))
	g.msg(5, pbTensorF32("w2", []int64{int64(hidden), int64(out)}, w2, true))
	g.msg(5, pbTensorF32("b2", []int64{int64(out)}, b2, false))
	g.msg(11, pbValueInfo("x", Float, "N", in))
	g.msg(12, pbValueInfo("probs", Float, "N", out))
	return pbModel(13, g).b
}

func pbAttrInts(name string, v ...int64) *pbw {
	return (&pbw{}).str(1, name).varint(20, int64(AttrInts)).packedInts(8, v)
}

// cnnModel builds a small image classifier: two 3x3 convolutions with ReLU
// and max pooling, global average pooling and a dense layer, on
// [N, 3, size, size] inputs.
func cnnModel(size int) []byte {
	weights := func(n int, seed float64) []float32 {
		w := make([]float32, n)
		for i := range w {
			w[i] = float32(math.Sin(float64(i)*0.37+seed)) * 0.2
		}
		return w
	}
	g := &pbw{}
	g.str(2, "cnn")
	g.msg(1, pbNode("conv1", "Conv", []string{"x", "w1", "b1"}, []string{"c1"}, pbAttrInts("pads", 1, 1, 1, 1), pbAttrInts("kernel_shape", 3, 3)))
	g.msg(1, pbNode("relu1", "Relu", []string{"c1"}, []string{"r1"}))
	g.msg(1, pbNode("pool1", "MaxPool", []string{"r1"}, []string{"p1"}, pbAttrInts("kernel_shape", 2, 2), pbAttrInts("strides", 2, 2)))
	g.msg(1, pbNode("conv2", "Conv", []string{"p1", "w2", "b2"}, []string{"c2"}, pbAttrInts("pads", 1, 1, 1, 1)))
	g.msg(1, pbNode("relu2", "Relu", []string{"c2"}, []string{"r2"}))
	g.msg(1, pbNode("gap", "GlobalAveragePool", []string{"r2"}, []string{"g"}))
	g.msg(1, pbNode("flat", "Flatten", []string{"g"}, []string{"f"}))
	g.msg(1, pbNode("fc", "Gemm", []string{"f", "w3", "b3"}, []string{"logits"}, pbAttrInt("transB", 1)))
	g.msg(5, pbTensorF32("w1", []int64{16, 3, 3, 3}, weights(16*3*9, 0), true))
	g.msg(5, pbTensorF32("b1", []int64{16}, weights(16, 1), true))
	g.msg(5, pbTensorF32("w2", []int64{32, 16, 3, 3}, weights(32*16*9, 2), true))
	g.msg(5, pbTensorF32("b2", []int64{32}, weights(32, 3), true))
	g.msg(5, pbTensorF32("w3", []int64{10, 32}, weights(320, 4), true))
	g.msg(5, pbTensorF32("b3", []int64{10}, weights(10, 5), true))
	g.msg(11, pbValueInfo("x", Float, "N", 3, size, size))
	g.msg(12, pbValueInfo("logits", Float, "N", 10))
	return pbModel(13, g).b
}
