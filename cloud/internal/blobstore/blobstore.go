// Package blobstore implements cloud.Blobs on a local directory:
//
//	<dir>/sha256/<first two hex>/<hex>   complete blobs, read-only
//	<dir>/tmp/upload-*                   uploads in progress
//
// A blob is written to a temp file, hashed as it streams, fsynced, then
// renamed into place and its directory fsynced, so a crash mid-upload leaves
// nothing visible; Open clears the leftovers of such a crash.
package blobstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/mlfleet/mlfleet/cloud"
	"github.com/mlfleet/mlfleet/shared/errclass"
)

// Dir is a blob directory.
type Dir struct {
	root string
}

var _ cloud.Blobs = (*Dir)(nil)

// Open prepares root and removes unfinished uploads left by a crash. Call it
// before anything else writes to root.
func Open(root string) (*Dir, error) {
	for _, d := range []string{filepath.Join(root, "sha256"), filepath.Join(root, "tmp")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("blob dir: %w", err)
		}
	}
	left, err := filepath.Glob(filepath.Join(root, "tmp", "upload-*"))
	if err != nil {
		return nil, err
	}
	for _, f := range left {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("remove unfinished upload: %w", err)
		}
	}
	return &Dir{root: root}, nil
}

var digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

func (d *Dir) path(digest string) (string, error) {
	if !digestRE.MatchString(digest) {
		return "", errclass.Invalid("digest", "digest %q is not sha256:<64 hex>", digest)
	}
	hexd := strings.TrimPrefix(digest, "sha256:")
	return filepath.Join(d.root, "sha256", hexd[:2], hexd), nil
}

// ctxReader stops reading when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Write streams r into a new blob. See cloud.Blobs.
func (d *Dir) Write(ctx context.Context, r io.Reader, limit int64, check func(path string) error) (string, int64, error) {
	tmp, err := os.CreateTemp(filepath.Join(d.root, "tmp"), "upload-*")
	if err != nil {
		return "", 0, fmt.Errorf("blob temp file: %w", err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	buf := make([]byte, 256<<10)
	n, err := io.CopyBuffer(io.MultiWriter(tmp, h), io.LimitReader(ctxReader{ctx, r}, limit+1), buf)
	if err != nil {
		return "", 0, fmt.Errorf("receive blob: %w", err)
	}
	if n > limit {
		return "", 0, errclass.New(errclass.TooLarge, "", "upload is larger than the limit of %d bytes", limit)
	}
	if err := tmp.Sync(); err != nil {
		return "", 0, fmt.Errorf("sync blob: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", 0, fmt.Errorf("close blob: %w", err)
	}
	if check != nil {
		if err := check(tmp.Name()); err != nil {
			return "", 0, err
		}
	}
	digest := "sha256:" + hex.EncodeToString(h.Sum(nil))
	final, _ := d.path(digest)
	if err := os.MkdirAll(filepath.Dir(final), 0o700); err != nil {
		return "", 0, fmt.Errorf("blob dir: %w", err)
	}
	if err := os.Chmod(tmp.Name(), 0o400); err != nil {
		return "", 0, err
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		return "", 0, fmt.Errorf("place blob: %w", err)
	}
	done = true
	if err := syncDir(filepath.Dir(final)); err != nil {
		return "", 0, err
	}
	return digest, n, nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// Open opens a blob for reading.
func (d *Dir) Open(digest string) (io.ReadSeekCloser, error) {
	p, err := d.path(digest)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errclass.NotFoundf("blob %s not found", digest)
	}
	return f, err
}

// Path returns the file of an existing blob.
func (d *Dir) Path(digest string) (string, error) {
	p, err := d.path(digest)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", errclass.NotFoundf("blob %s not found", digest)
		}
		return "", err
	}
	return p, nil
}

// Delete removes a blob.
func (d *Dir) Delete(digest string) error {
	p, err := d.path(digest)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete blob %s: %w", digest, err)
	}
	return nil
}
