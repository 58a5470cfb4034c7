package imagebuild

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

const tinyScorer = `package main

import "fmt"

func main() { fmt.Println("mlfleet-scorer stand-in ok") }
`

// goBuild cross-compiles a tiny static program for p into dir.
func goBuild(t testing.TB, dir string, p Platform) string {
	t.Helper()
	src := filepath.Join(dir, "src")
	writeFile(t, src, "go.mod", []byte("module tinyscorer\n\ngo 1.22\n"))
	writeFile(t, src, "main.go", []byte(tinyScorer))
	out := filepath.Join(dir, "scorer-"+strings.ReplaceAll(p.String(), "/", "-"))
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w -buildid=", "-o", out, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Arch, "GOFLAGS=-mod=mod", "GOWORK=off")
	if p.Arch == "arm" {
		cmd.Env = append(cmd.Env, "GOARM="+strings.TrimPrefix(p.Variant, "v"))
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build for %s: %v\n%s", p, err, b)
	}
	return out
}

// TestRealScorerBinary packs real static Go binaries, pulls the image
// back, extracts the scorer for this machine and runs it.
func TestRealScorerBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles Go programs")
	}
	if runtime.GOOS != "linux" {
		t.Skip("runs a linux binary")
	}
	host := Platform{OS: "linux", Arch: runtime.GOARCH}
	dir := t.TempDir()
	reg := newRegistry(t, "")
	spec := testSpec(t, reg, "acme/real", []byte("model"))
	spec.Scorers = map[Platform]string{host: goBuild(t, dir, host), armv7: goBuild(t, dir, armv7)}
	res, err := Build(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(res.Reference, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Index(ref)
	if err != nil {
		t.Fatal(err)
	}
	im, _ := idx.IndexManifest()
	for _, d := range im.Manifests {
		if d.Platform.Architecture != host.Arch {
			continue
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		layers, _ := img.Layers()
		rc, err := layers[0].Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err != nil {
				t.Fatalf("no scorer in layer 0: %v", err)
			}
			if "/"+h.Name != ScorerPath {
				continue
			}
			bin := filepath.Join(t.TempDir(), "mlfleet-scorer")
			b, _ := io.ReadAll(tr)
			if err := os.WriteFile(bin, b, os.FileMode(h.Mode)); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(bin).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "stand-in ok") {
				t.Fatalf("extracted scorer: %v: %s", err, out)
			}
			rc.Close()
			return
		}
	}
	t.Fatalf("no %s image in the index", host)
}

// TestLargeModelMemory builds and pushes a 1 GiB model in a child process
// and checks that its peak RSS (VmHWM) grows by less than 100 MB over
// its RSS before the build: the model is streamed, never buffered.
func TestLargeModelMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 1 GiB twice")
	}
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("needs /proc")
	}
	dir := t.TempDir()
	model := filepath.Join(dir, "big.onnx")
	f, err := os.Create(model)
	if err != nil {
		t.Fatal(err)
	}
	// A sparse file: reading it costs no disk, and memory use does not
	// depend on the bytes.
	if err := f.Truncate(1 << 30); err != nil {
		t.Fatal(err)
	}
	f.Close()
	reg := newRegistry(t, filepath.Join(dir, "blobs"))
	scorers := fakeScorers(t, dir, amd64, arm64)

	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperBuildProcess$", "-test.v")
	cmd.Env = append(os.Environ(),
		"IMAGEBUILD_HELPER=1",
		"IMAGEBUILD_REPO="+reg.host+"/acme/big",
		"IMAGEBUILD_MODEL="+model,
		"IMAGEBUILD_SCORER_AMD64="+scorers[amd64],
		"IMAGEBUILD_SCORER_ARM64="+scorers[arm64],
	)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var start, peak int64 = -1, -1
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if _, err := fmt.Sscanf(strings.TrimSpace(sc.Text()), "MEMORY start_rss_kb=%d peak_rss_kb=%d", &start, &peak); err == nil {
			break
		}
	}
	if start < 0 {
		t.Fatalf("child printed no MEMORY line:\n%s", out)
	}
	growth := (peak - start) * 1024
	t.Logf("1 GiB model: RSS %d MB before, peak %d MB, growth %.1f MB", start/1024, peak/1024, float64(growth)/1e6)
	if growth > 100e6 {
		t.Errorf("peak RSS grew by %.1f MB building a 1 GiB model; want under 100 MB", float64(growth)/1e6)
	}
}

// TestHelperBuildProcess is the child of TestLargeModelMemory.
func TestHelperBuildProcess(t *testing.T) {
	if os.Getenv("IMAGEBUILD_HELPER") != "1" {
		return // only TestLargeModelMemory's child does the work
	}
	start := procStatusKB(t, "VmRSS")
	res, err := Build(context.Background(), Spec{
		Repository: os.Getenv("IMAGEBUILD_REPO"),
		Tag:        "big",
		Scorers:    map[Platform]string{amd64: os.Getenv("IMAGEBUILD_SCORER_AMD64"), arm64: os.Getenv("IMAGEBUILD_SCORER_ARM64")},
		Models:     []File{{Name: "big.onnx", Path: os.Getenv("IMAGEBUILD_MODEL")}},
		Manifest:   []byte(`{"id":"big"}`),
		Insecure:   true,
	})
	if err != nil {
		t.Fatal(err)
	}
	peak := procStatusKB(t, "VmHWM")
	fmt.Printf("pushed %s, %d bytes uploaded\n", res.Reference, res.BytesUploaded)
	fmt.Printf("MEMORY start_rss_kb=%d peak_rss_kb=%d\n", start, peak)
}

func procStatusKB(t *testing.T, field string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no %s in /proc/self/status", field)
	return 0
}

// BenchmarkCraneCompare is driven by testdata/crane_compare.sh: with
// IMAGEBUILD_EXPORT_DIR set it builds a one-platform image (8 MB scorer,
// IMAGEBUILD_MODEL_MB of random model, default 100), writes its three
// layers there as uncompressed tarballs for crane, and, with
// IMAGEBUILD_REGISTRY set, times Build pushing the same image there.
func BenchmarkCraneCompare(b *testing.B) {
	out := os.Getenv("IMAGEBUILD_EXPORT_DIR")
	if out == "" {
		b.Log("set IMAGEBUILD_EXPORT_DIR (testdata/crane_compare.sh does)")
		return
	}
	mb := 100
	if v := os.Getenv("IMAGEBUILD_MODEL_MB"); v != "" {
		var err error
		if mb, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
	}
	dir := b.TempDir()
	spec := Spec{
		Repository: "127.0.0.1:1/unused",
		Scorers:    map[Platform]string{amd64: writeFile(b, dir, "scorer", pseudoRandom(100, benchScorerSize))},
		Models:     []File{{Name: "model.onnx", Path: writeFile(b, dir, "model.onnx", incompressible(1, mb<<20))}},
		Manifest:   []byte(`{"id":"crane-compare"}`),
		Insecure:   true,
	}
	if reg := os.Getenv("IMAGEBUILD_REGISTRY"); reg != "" {
		spec.Repository = reg + "/mlfleet-compare/img"
		spec.Tag = "v1"
	}
	idx, err := BuildLocal(context.Background(), spec)
	if err != nil {
		b.Fatal(err)
	}
	im, _ := idx.IndexManifest()
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		b.Fatal(err)
	}
	layers, _ := img.Layers()
	for i, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			b.Fatal(err)
		}
		f, err := os.Create(filepath.Join(out, fmt.Sprintf("%d-%s.tar", i, []string{KindScorer, KindModel, KindManifest}[i])))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(f, rc); err != nil {
			b.Fatal(err)
		}
		rc.Close()
		f.Close()
	}
	if os.Getenv("IMAGEBUILD_REGISTRY") == "" {
		return
	}
	start := time.Now()
	res, err := Build(context.Background(), spec)
	if err != nil {
		b.Fatal(err)
	}
	fmt.Printf("MLFLEET imagebuild.Build (hash + gzip + push, 1 platform): %.2fs, %d bytes uploaded, %s\n", time.Since(start).Seconds(), res.BytesUploaded, res.Reference)
}
