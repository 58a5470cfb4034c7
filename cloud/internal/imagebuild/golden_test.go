package imagebuild

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// goldenSpec is a fixed 2-platform spec: its bytes are pinned by the golden
// files, so any change to the tar, gzip, config or manifest encoding shows.
func goldenSpec(t *testing.T) Spec {
	dir := t.TempDir()
	return Spec{
		Repository: "127.0.0.1:5000/acme/models/iris",
		Tag:        "v3",
		Scorers: map[Platform]string{
			amd64: writeFile(t, dir, "scorer-amd64", []byte("#!fake scorer for amd64\n")),
			armv7: writeFile(t, dir, "scorer-armv7", []byte("#!fake scorer for arm/v7\n")),
		},
		Models:   []File{{Name: "iris.onnx", Path: writeFile(t, dir, "iris.onnx", []byte("ONNX model bytes"))}},
		Manifest: []byte(`{"id":"m-3","model":{"name":"iris","version":3},"runtime":"onnx"}`),
		Extra:    []File{{Name: "score.py", Path: writeFile(t, dir, "score.py", []byte("def run(x):\n    return x\n"))}},
		Labels:   map[string]string{LabelModelName: "iris", LabelModelVersion: "3"},
		Env:      []string{"OMP_NUM_THREADS=1"},
	}
}

// TestGoldenWireFormat pins the exact bytes of the index, each manifest and
// config, and each layer (by digest and tar listing). Regenerate with
// go test -run TestGoldenWireFormat -update after an intended change.
func TestGoldenWireFormat(t *testing.T) {
	idx, err := BuildLocal(context.Background(), goldenSpec(t))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	raw, err := idx.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	files["index.json"] = raw
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var listing strings.Builder
	id, _ := idx.Digest()
	fmt.Fprintf(&listing, "index digest %s\n", id)
	for _, d := range im.Manifests {
		p := strings.ReplaceAll(d.Platform.String(), "/", "-")
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		if files["manifest-"+p+".json"], err = img.RawManifest(); err != nil {
			t.Fatal(err)
		}
		if files["config-"+p+".json"], err = img.RawConfigFile(); err != nil {
			t.Fatal(err)
		}
		layers, err := img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		for i, l := range layers {
			writeListing(t, &listing, d.Platform.String(), i, l)
		}
	}
	files["layers.txt"] = []byte(listing.String())

	for name, got := range files {
		path := filepath.Join("testdata", "golden", name)
		if strings.HasSuffix(name, ".json") {
			got = indentJSON(t, got)
		}
		if *update {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run with -update to create)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from the golden file:\n got %s\nwant %s", name, got, want)
		}
	}
}

func writeListing(t *testing.T, w *strings.Builder, platform string, i int, l v1.Layer) {
	d, _ := l.Digest()
	diff, _ := l.DiffID()
	size, _ := l.Size()
	fmt.Fprintf(w, "%s layer %d digest %s size %d diffid %s\n", platform, i, d, size, diff)
	es, files := readTar(t, l)
	for _, e := range es {
		fmt.Fprintf(w, "  %c %04o %d:%d %q:%q mtime=%d size=%d %s", e.Type, e.Mode, e.Uid, e.Gid, e.Uname, e.Gname, e.Mtime, e.Size, e.Name)
		if b, ok := files[e.Name]; ok {
			fmt.Fprintf(w, " = %q", b)
		}
		w.WriteString("\n")
	}
}

// indentJSON pretty-prints raw JSON for readable golden files; the raw
// bytes are still pinned through the digests in index.json and layers.txt.
func indentJSON(t *testing.T, b []byte) []byte {
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		t.Fatal(err)
	}
	out.WriteString("\n")
	return out.Bytes()
}
