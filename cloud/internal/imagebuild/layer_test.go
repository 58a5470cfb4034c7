package imagebuild

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/mlfleet/mlfleet/shared/errclass"
)

func TestGzipHeaderIsFixed(t *testing.T) {
	dir := t.TempDir()
	l, err := newFileLayer(context.Background(), KindModel, []entry{
		{name: "mlfleet/models/m.onnx", mode: 0o444, path: writeFile(t, dir, "m.onnx", []byte("abc")), size: 3},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := l.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	// magic, deflate, no flags (so no name or comment), mtime 0, XFL 4
	// (fastest compression), OS 255 (unknown).
	want := []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 0xff}
	if !bytes.Equal(b[:10], want) {
		t.Fatalf("gzip header % x, want % x", b[:10], want)
	}
	if int64(len(b)) != l.size {
		t.Fatalf("streamed %d bytes, Size() says %d", len(b), l.size)
	}
}

func TestLayerDetectsChangedFile(t *testing.T) {
	tests := []struct {
		name   string
		change []byte
	}{
		{"same size, new bytes", []byte("MODEL-2")},
		{"shrank", []byte("M")},
		{"grew", []byte("MODEL-1 and more")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeFile(t, t.TempDir(), "m.onnx", []byte("MODEL-1"))
			l, err := newFileLayer(context.Background(), KindModel, []entry{{name: "mlfleet/models/m.onnx", mode: 0o444, path: p, size: 7}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, tt.change, 0o644); err != nil {
				t.Fatal(err)
			}
			rc, _ := l.Compressed()
			_, err = io.ReadAll(rc)
			rc.Close()
			if !errclass.Is(err, errclass.FailedPrecondition) {
				t.Fatalf("reading a layer whose file changed: %v, want a FailedPrecondition error", err)
			}
		})
	}
}

func TestLayerHonoursContext(t *testing.T) {
	p := writeFile(t, t.TempDir(), "m.onnx", make([]byte, 1<<20))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := newFileLayer(ctx, KindModel, []entry{{name: "mlfleet/models/m.onnx", mode: 0o444, path: p, size: 1 << 20}}, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("hashing with a cancelled context: %v", err)
	}
}

func TestWithParents(t *testing.T) {
	tests := []struct {
		name    string
		in      []string
		want    []string
		wantErr bool
	}{
		{"one file", []string{"mlfleet/a"}, []string{"mlfleet/", "mlfleet/a"}, false},
		{"nested and sorted", []string{"mlfleet/z", "mlfleet/b/c/d", "mlfleet/b.txt"},
			[]string{"mlfleet/", "mlfleet/b.txt", "mlfleet/b/", "mlfleet/b/c/", "mlfleet/b/c/d", "mlfleet/z"}, false},
		{"duplicate", []string{"mlfleet/a", "mlfleet/a"}, nil, true},
		{"file then dir", []string{"mlfleet/a", "mlfleet/a/b"}, nil, true},
		{"dir then file", []string{"mlfleet/a/b", "mlfleet/a"}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var es []entry
			for _, n := range tt.in {
				es = append(es, entry{name: n, mode: 0o444})
			}
			out, err := withParents(es)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			var got []string
			for _, e := range out {
				got = append(got, tarName(e))
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// FuzzFileNames feeds arbitrary model and script names through validation
// and, when accepted, through the layer encoder: every tar entry must stay
// inside mlfleet/, parents must precede children, and the stream must
// parse back.
func FuzzFileNames(f *testing.F) {
	for _, s := range []string{"iris.onnx", "a/b/c.py", "../x", "/abs", "a//b", "a/./b", "", "ok-name_1.2", "é.py", "a\x00b", strings.Repeat("x/", 200)} {
		f.Add(s, "other.py")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		var es []entry
		for _, n := range []string{a, b} {
			if validName(n) != nil {
				continue
			}
			if strings.Contains(n, "..") && strings.Contains("/"+n+"/", "/../") {
				t.Fatalf("validName accepted %q", n)
			}
			es = append(es, entry{name: "mlfleet/app/" + n, mode: 0o444, data: []byte(n), size: int64(len(n))})
		}
		if len(es) == 0 {
			return
		}
		l, err := newFileLayer(context.Background(), KindManifest, es, nil)
		if err != nil {
			if errclass.ClassOf(err) != errclass.InvalidArgument {
				t.Fatalf("unexpected error class for %q %q: %v", a, b, err)
			}
			return
		}
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		tr := tar.NewReader(rc)
		seen := map[string]bool{}
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("read back: %v", err)
			}
			if !strings.HasPrefix(h.Name, "mlfleet/") || strings.Contains(h.Name, "..") && strings.Contains("/"+h.Name, "/../") {
				t.Fatalf("entry %q escapes mlfleet/", h.Name)
			}
			if parent := parentOf(h.Name); parent != "" && !seen[parent] {
				t.Fatalf("entry %q before its parent %q", h.Name, parent)
			}
			seen[h.Name] = true
		}
	})
}

func parentOf(name string) string {
	name = strings.TrimSuffix(name, "/")
	i := strings.LastIndex(name, "/")
	if i < 0 {
		return ""
	}
	return name[:i+1]
}

// FuzzParsePlatform checks that ParsePlatform accepts only what String
// gives back unchanged.
func FuzzParsePlatform(f *testing.F) {
	for _, s := range []string{"linux/amd64", "linux/arm/v7", "linux/arm64/v8", "linux", "a/b/c/d", "//", "Linux/AMD64", "linux/amd64/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePlatform(s)
		if err != nil {
			if errclass.FieldOf(err) != "platform" {
				t.Fatalf("error without the platform field: %v", err)
			}
			return
		}
		if p.String() != s {
			t.Fatalf("ParsePlatform(%q).String() = %q", s, p.String())
		}
	})
}

func TestLayerCache(t *testing.T) {
	ctx := context.Background()
	reg := newRegistry(t, "")
	spec := testSpec(t, reg, "acme/iris", []byte("model"))
	spec.Cache = NewLayerCache(2)
	first, err := BuildLocal(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	uncached := spec
	uncached.Cache = nil
	plain, err := BuildLocal(ctx, uncached)
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := first.Digest()
	if d2, _ := plain.Digest(); d1 != d2 {
		t.Fatalf("cached build %s, uncached %s", d1, d2)
	}
	if n := len(spec.Cache.m); n != 2 {
		t.Errorf("cache of 2 holds %d layers", n)
	}

	// Rewrite the amd64 scorer in place with the same size and mtime: the
	// cache cannot tell (documented), but uploading it fails instead of
	// sending bytes that do not match the digest.
	spec.Cache = NewLayerCache(0)
	if _, err := BuildLocal(ctx, spec); err != nil {
		t.Fatal(err)
	}
	p := spec.Scorers[amd64]
	fi, _ := os.Stat(p)
	old, _ := os.ReadFile(p)
	if err := os.WriteFile(p, bytes.Repeat([]byte{'x'}, len(old)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	_, err = Build(ctx, spec)
	if !errclass.Is(err, errclass.FailedPrecondition) {
		t.Fatalf("push of a layer whose file changed under the cache: %v, want FailedPrecondition", err)
	}

	// A new mtime is a cache miss: the new contents get a new digest.
	if err := os.Chtimes(p, fi.ModTime().Add(1e9), fi.ModTime().Add(1e9)); err != nil {
		t.Fatal(err)
	}
	res, err := Build(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if res.Digest == d1.String() {
		t.Fatal("changed scorer gave the old index digest")
	}
}
