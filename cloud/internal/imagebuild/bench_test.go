package imagebuild

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// benchScorerSize is the size of each fake scorer binary in benchmarks,
// about that of a static scorer with an inference engine linked in.
const benchScorerSize = 8 << 20

func benchSpec(b *testing.B, reg *testRegistry, dir string, modelSize int, seed uint64) Spec {
	b.Helper()
	spec := Spec{
		Repository: reg.host + "/acme/bench",
		Tag:        "latest",
		Scorers:    map[Platform]string{},
		Models:     []File{{Name: "model.onnx", Path: writeFile(b, dir, fmt.Sprintf("model-%d.onnx", seed), incompressible(seed, modelSize))}},
		Manifest:   []byte(fmt.Sprintf(`{"id":"m-%d","runtime":"onnx"}`, seed)),
		Insecure:   true,
	}
	for i, p := range []Platform{amd64, arm64, armv7} {
		path := filepath.Join(dir, "scorer-"+fmt.Sprint(i))
		if _, err := os.Stat(path); err != nil { // written once: same mtime, cacheable
			writeFile(b, dir, "scorer-"+fmt.Sprint(i), pseudoRandom(uint64(100+i), benchScorerSize))
		}
		spec.Scorers[p] = path
	}
	return spec
}

// reportLayers reports the compressed size of each layer kind for one
// platform (they are the same shape on every platform).
func reportLayers(b *testing.B, res *Result) {
	for _, li := range res.Layers {
		if li.Platform == amd64 {
			b.ReportMetric(float64(li.Size), li.Kind+"-B/platform")
		}
	}
	b.ReportMetric(float64(res.BytesUploaded), "uploaded-B/op")
}

// BenchmarkBuildPush builds and pushes a 3-platform index to an empty
// registry: every layer is hashed, compressed again and uploaded.
// MB/s is model bytes per second.
func BenchmarkBuildPush(b *testing.B) {
	for _, size := range []int{1 << 20, 10 << 20, 100 << 20} {
		b.Run(fmt.Sprintf("%dMB", size>>20), func(b *testing.B) {
			dir := b.TempDir()
			var last *Result
			b.SetBytes(int64(size))
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				reg := newRegistry(b, "") // empty each time
				spec := benchSpec(b, reg, dir, size, 1)
				b.StartTimer()
				res, err := Build(context.Background(), spec)
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				reg.srv.Close()
				last = res
				b.StartTimer()
			}
			reportLayers(b, last)
		})
	}
}

// BenchmarkBuildPushNewVersion10MB pushes a new 10 MB model version to a
// repository that already has the scorer layers (goal: under 1 s). With
// a LayerCache (what a long-running cloud uses) the scorer binaries are
// not hashed again; without, each build hashes 3 x 8 MB of scorers.
func BenchmarkBuildPushNewVersion10MB(b *testing.B) {
	for _, cached := range []bool{true, false} {
		b.Run(map[bool]string{true: "cache", false: "nocache"}[cached], func(b *testing.B) {
			dir := b.TempDir()
			reg := newRegistry(b, "")
			var cache *LayerCache
			if cached {
				cache = NewLayerCache(0)
			}
			first := benchSpec(b, reg, dir, 10<<20, 0)
			first.Cache = cache
			if _, err := Build(context.Background(), first); err != nil {
				b.Fatal(err)
			}
			var last *Result
			b.SetBytes(10 << 20)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				spec := benchSpec(b, reg, dir, 10<<20, uint64(i+1))
				spec.Cache = cache
				b.StartTimer()
				res, err := Build(context.Background(), spec)
				if err != nil {
					b.Fatal(err)
				}
				last = res
			}
			reportLayers(b, last)
		})
	}
}
