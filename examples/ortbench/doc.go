// Package ortbench holds benchmarks, and nothing else, that compare the
// pure-Go ONNX engine (images/onnx) and the scoring server (images/scorer)
// with onnxruntime on the example models of examples/testdata.
//
// Everything is in the package's tests:
//
//   - BenchmarkCompare/<model>/<rows>/mlfleet times Session.Run on 1 and 256
//     rows of each example model; with the build tag "ort" (cgo and the
//     onnxruntime shared library, see README.md) the sibling
//     .../onnxruntime times onnxruntime on the same file and the same rows
//     through github.com/yalue/onnxruntime_go, one intra-op and one
//     inter-op thread, after checking that both give the same outputs.
//   - TestAgreement checks that agreement without timing anything (it skips
//     without the tag).
//   - BenchmarkScoreHTTP/<model>/{scorer,baseline} posts one row to the real
//     scorer's POST /score from 16 concurrent clients and to a minimal
//     net/http handler calling the same engine in-process, reporting req/s,
//     p50 and p99 latency.
//
// After the benchmarks, TestMain prints one table of every figure side by
// side (model, rows, mlfleet ns, onnxruntime ns, ratio, goal).
//
// Without the tag the package needs no cgo: the onnxruntime columns are
// empty and the rest still runs, so the scorer and engine stay pure Go.
package ortbench
