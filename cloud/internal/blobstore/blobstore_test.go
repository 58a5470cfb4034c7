package blobstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mlfleet/mlfleet/shared/errclass"
)

func TestWriteOpenDelete(t *testing.T) {
	dir := t.TempDir()
	d, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	data := "model weights"
	sum := sha256.Sum256([]byte(data))
	want := "sha256:" + hex.EncodeToString(sum[:])
	digest, n, err := d.Write(context.Background(), strings.NewReader(data), 1<<20, nil)
	if err != nil || digest != want || n != int64(len(data)) {
		t.Fatalf("Write = %s %d %v, want %s", digest, n, err, want)
	}
	f, err := d.Open(digest)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(f)
	f.Close()
	if string(got) != data {
		t.Errorf("read back %q", got)
	}
	if p, err := d.Path(digest); err != nil || filepath.Dir(filepath.Dir(p)) != filepath.Join(dir, "sha256") {
		t.Errorf("Path = %s %v", p, err)
	}
	if err := d.Delete(digest); err != nil {
		t.Fatal(err)
	}
	if err := d.Delete(digest); err != nil {
		t.Errorf("second delete: %v", err)
	}
	if _, err := d.Open(digest); !errclass.Is(err, errclass.NotFound) {
		t.Errorf("open deleted = %v, want NotFound", err)
	}
}

func TestWriteRefusals(t *testing.T) {
	d, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	refuse := errclass.Invalid("file", "no")
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	cases := []struct {
		name  string
		ctx   context.Context
		body  string
		limit int64
		check func(string) error
		class errclass.Class
	}{
		{"too large", context.Background(), "12345", 4, nil, errclass.TooLarge},
		{"check refuses", context.Background(), "abc", 10, func(string) error { return refuse }, errclass.InvalidArgument},
		{"cancelled", cancelled, "abc", 10, nil, errclass.Unknown},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := d.Write(c.ctx, strings.NewReader(c.body), c.limit, c.check)
			if err == nil || errclass.ClassOf(err) != c.class {
				t.Fatalf("err = %v, want class %s", err, c.class)
			}
			// Nothing is left behind: no temp file, no blob.
			left, _ := filepath.Glob(filepath.Join(d.root, "tmp", "*"))
			blobs, _ := filepath.Glob(filepath.Join(d.root, "sha256", "*", "*"))
			if len(left)+len(blobs) != 0 {
				t.Errorf("left behind: %v %v", left, blobs)
			}
		})
	}
	if _, err := d.Open("md5:abc"); !errclass.Is(err, errclass.InvalidArgument) {
		t.Errorf("bad digest = %v", err)
	}
}

func TestOpenClearsUnfinishedUploads(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(dir); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, "tmp", "upload-123")
	if err := os.WriteFile(stale, []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("unfinished upload survived Open: %v", err)
	}
}
