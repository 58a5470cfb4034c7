// Package onnx is a pure-Go ONNX inference engine: it decodes ONNX model files
// with a hand-written, bounds-checked protobuf reader, checks at load time that
// every node is supported at the model's opset, and runs the graph on CPU. It
// uses only the standard library and no cgo, so it builds into static binaries
// for amd64, arm64 and arm/v7.
//
// Entry points:
//
//   - Decode / Load turn a model file into a *Model (errors are
//     errclass.InvalidArgument, or TooLarge for Load over its limit).
//   - Inspect cheaply validates an uploaded file and reports its inputs,
//     outputs, opsets, producer and unsupported operators, without copying
//     the weights or building a session.
//   - NewSession plans a model (topological order, constant folding, per-node
//     attribute checks) and refuses unsupported operators naming the node.
//     (*Session).Run is safe for concurrent use; intermediate buffers are
//     recycled across runs through per-run arenas kept in a sync.Pool.
//     Planning also fuses dense layers (MatMul -> Add of a constant bias ->
//     optional Relu, and Gemm -> Relu) into single steps when the
//     intermediate values have no other reader; fused steps give the
//     unfused kernels' results bit for bit (fuse.go).
//
// Operators are registered in a table (Register, OpDef) keyed by domain, name
// and first opset; the default domain's operators live in ops_*.go, the
// ai.onnx.ml ones in ml_*.go. EXTENDING.md explains how to add one.
//
// Values are *Tensor: a typed Go slice in row-major order, or a sequence or
// map (for ai.onnx.ml outputs such as ZipMap's). Float16 and bfloat16 tensors
// are widened to float32 on decode and computed in float32 (results are
// rounded back to float16 where an operator's output type is float16); their
// DType is kept so callers see what the model declared.
//
// Untrusted input data cannot exhaust memory or time: every tensor a kernel
// allocates is bounded by MaxTensorElements, and Loop by a per-session
// iteration limit (WithMaxLoopIterations). Runs honour context cancellation
// between nodes.
//
// The ONNX backend node tests (Debian package libonnx-testdata) run with
// go test -run TestNodeSuite; testdata/known_failures.txt lists the few
// expected failures with their reasons.
package onnx
