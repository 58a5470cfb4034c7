package imagebuild

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/mlfleet/mlfleet/shared/errclass"
)

// Layer kinds, as reported in LayerInfo.Kind and Event.Kind.
const (
	KindScorer   = "scorer"
	KindModel    = "model"
	KindManifest = "manifest"
	KindBase     = "base"   // a layer of the base image (exec runtimes)
	KindConfig   = "config" // an image config blob (progress events only)
)

// Fixed inputs of the deterministic tar+gzip encoding. Changing any of them
// changes every layer digest, so they are part of the wire format (see the
// golden tests).
const (
	// scorerGzipLevel is the deflate level of scorer layers: they are
	// built once per scorer release and downloaded once per device, so
	// they get the better ratio.
	scorerGzipLevel = gzip.DefaultCompression
	// dataGzipLevel is the deflate level of model and manifest layers:
	// models are large, change with every version and are often
	// incompressible, so speed matters more (about 8x faster than the
	// default level on random bytes, within 10% of its ratio otherwise).
	dataGzipLevel = gzip.BestSpeed
	// rootDir is the directory, relative to the image root, holding
	// everything mlfleet adds.
	rootDir = "mlfleet"
	// layerKindAnnotation names a layer's kind on its manifest descriptor.
	layerKindAnnotation = "mlfleet.layer.kind"
)

// epoch is the fixed timestamp of every tar entry, config and history entry.
var epoch = time.Unix(0, 0).UTC()

// entry is one tar entry of a layer. Exactly one of data or path supplies a
// regular file's contents; directories have neither.
type entry struct {
	name string // slash-separated, relative ("mlfleet/bin/mlfleet-scorer")
	dir  bool
	mode int64
	data []byte // small in-memory contents (the manifest)
	path string // file on disk, streamed
	size int64  // of data or of the file at path when the layer was hashed

	// Identity of the file at path when described, for LayerCache keys.
	modTime  int64
	dev, ino uint64
}

// fileLayer is a v1.Layer whose tar stream is generated on demand from a
// sorted list of entries. Its digests are computed once, by streaming, when
// it is made; Compressed regenerates the same bytes by streaming again, so
// no file is ever held in memory whatever its size.
type fileLayer struct {
	kind    string
	level   int // gzip level
	entries []entry

	digest v1.Hash // sha256 of the gzip stream
	diffID v1.Hash // sha256 of the tar stream
	size   int64   // of the gzip stream

	mu      sync.Mutex
	onRead  func(kind string, digest v1.Hash, done, total int64) // progress hook, may be nil
	onClose func()
}

var _ v1.Layer = (*fileLayer)(nil)

// newFileLayer sorts entries, adds the parent directories of every entry,
// and hashes the layer, unless cache (which may be nil) knows the sums of
// the same entries from unchanged files.
func newFileLayer(ctx context.Context, kind string, files []entry, cache *LayerCache) (*fileLayer, error) {
	entries, err := withParents(files)
	if err != nil {
		return nil, err
	}
	level := dataGzipLevel
	if kind == KindScorer {
		level = scorerGzipLevel
	}
	l := &fileLayer{kind: kind, level: level, entries: entries}
	key := cacheKey(kind, level, entries)
	if sums, ok := cache.get(key); ok {
		l.digest, l.diffID, l.size = sums.digest, sums.diffID, sums.size
		return l, nil
	}
	ch, dh := sha256.New(), sha256.New()
	n, err := l.encode(ctx, ch, dh)
	if err != nil {
		return nil, err
	}
	l.digest = hashOf(ch)
	l.diffID = hashOf(dh)
	l.size = n
	cache.put(key, layerSums{l.digest, l.diffID, l.size})
	return l, nil
}

func hashOf(h hash.Hash) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
}

// withParents returns the entries sorted by name with every missing parent
// directory added (mode 0755). Duplicate names are an error.
func withParents(files []entry) ([]entry, error) {
	byName := make(map[string]entry, len(files))
	for _, e := range files {
		if _, dup := byName[e.name]; dup {
			return nil, errclass.Invalid("files", "file %q appears twice in one layer (or is also a directory)", e.name)
		}
		byName[e.name] = e
		for dir := path.Dir(e.name); dir != "." && dir != "/"; dir = path.Dir(dir) {
			if prev, ok := byName[dir]; ok {
				if !prev.dir {
					return nil, errclass.Invalid("files", "%q is both a file and a directory", dir)
				}
				continue
			}
			byName[dir] = entry{name: dir, dir: true, mode: 0o755}
		}
	}
	out := make([]entry, 0, len(byName))
	for _, e := range byName {
		out = append(out, e)
	}
	// Sort by the name as written to the tar (directories end in "/"), which
	// puts every directory before its contents.
	sort.Slice(out, func(i, j int) bool { return tarName(out[i]) < tarName(out[j]) })
	return out, nil
}

func tarName(e entry) string {
	if e.dir {
		return e.name + "/"
	}
	return e.name
}

// encode writes the layer: the tar stream to raw (if not nil) and its gzip
// compression to compressed. It returns the number of compressed bytes.
func (l *fileLayer) encode(ctx context.Context, compressed, raw io.Writer) (int64, error) {
	cw := &countWriter{w: compressed}
	zw, err := gzip.NewWriterLevel(cw, l.level)
	if err != nil {
		return 0, err
	}
	// The zero gzip.Header has no name, no comment and a zero mtime.
	var tw *tar.Writer
	if raw != nil {
		tw = tar.NewWriter(io.MultiWriter(zw, raw))
	} else {
		tw = tar.NewWriter(zw)
	}
	if err := writeEntries(ctx, tw, l.entries); err != nil {
		return 0, err
	}
	if err := tw.Close(); err != nil {
		return 0, fmt.Errorf("finish %s layer tar: %w", l.kind, err)
	}
	if err := zw.Close(); err != nil {
		return 0, fmt.Errorf("finish %s layer gzip: %w", l.kind, err)
	}
	return cw.n, nil
}

// writeEntries writes entries with fixed metadata: mtime epoch, uid/gid 0,
// no user or group names.
func writeEntries(ctx context.Context, tw *tar.Writer, entries []entry) error {
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr := &tar.Header{
			Name:    tarName(e),
			Mode:    e.mode,
			ModTime: epoch,
			Uid:     0,
			Gid:     0,
		}
		if e.dir {
			hdr.Typeflag = tar.TypeDir
			if err := tw.WriteHeader(hdr); err != nil {
				return fmt.Errorf("write tar entry %q: %w", hdr.Name, err)
			}
			continue
		}
		hdr.Typeflag = tar.TypeReg
		hdr.Size = e.size
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("write tar entry %q: %w", hdr.Name, err)
		}
		if e.path == "" {
			if _, err := tw.Write(e.data); err != nil {
				return fmt.Errorf("write tar entry %q: %w", hdr.Name, err)
			}
			continue
		}
		if err := copyFile(ctx, tw, e); err != nil {
			return err
		}
	}
	return nil
}

// copyFile streams the file of e into w, failing if its size changed since
// the layer was described.
func copyFile(ctx context.Context, w io.Writer, e entry) error {
	f, err := os.Open(e.path)
	if err != nil {
		return errclass.Wrap(errclass.FailedPrecondition, err, "open %q for /%s", e.path, e.name)
	}
	defer f.Close()
	n, err := io.Copy(w, io.LimitReader(&ctxReader{ctx: ctx, r: f}, e.size))
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("copy %q into /%s: %w", e.path, e.name, err)
	}
	if n != e.size {
		return errclass.New(errclass.FailedPrecondition, "", "file %q shrank from %d to %d bytes during the build", e.path, e.size, n)
	}
	var one [1]byte
	if m, _ := f.Read(one[:]); m > 0 {
		return errclass.New(errclass.FailedPrecondition, "", "file %q grew beyond %d bytes during the build", e.path, e.size)
	}
	return nil
}

// ctxReader stops reading once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r *ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Digest implements v1.Layer.
func (l *fileLayer) Digest() (v1.Hash, error) { return l.digest, nil }

// DiffID implements v1.Layer.
func (l *fileLayer) DiffID() (v1.Hash, error) { return l.diffID, nil }

// Size implements v1.Layer.
func (l *fileLayer) Size() (int64, error) { return l.size, nil }

// MediaType implements v1.Layer.
func (l *fileLayer) MediaType() (types.MediaType, error) { return types.OCILayer, nil }

// pipeBufSize is the block size in which streamed layers are handed to
// their reader.
const pipeBufSize = 256 << 10

// errChanged reports that a file changed between hashing and streaming.
var errChanged = errors.New("layer contents changed since the layer was hashed")

// Compressed implements v1.Layer: it streams the gzip bytes again, checking
// at the end that they hash to the digest computed when the layer was made.
func (l *fileLayer) Compressed() (io.ReadCloser, error) {
	pr, pw := io.Pipe()
	l.mu.Lock()
	onRead := l.onRead
	l.mu.Unlock()
	go func() {
		// deflate writes in chunks of a few hundred bytes: buffer them so
		// the pipe hands the reader large blocks.
		bw := bufio.NewWriterSize(pw, pipeBufSize)
		h := sha256.New()
		_, err := l.encode(context.Background(), io.MultiWriter(bw, h), nil)
		if err == nil {
			err = bw.Flush()
		}
		if err == nil && hashOf(h) != l.digest {
			err = errclass.Wrap(errclass.FailedPrecondition, errChanged, "%s layer %s", l.kind, l.digest)
		}
		pw.CloseWithError(err) // nil closes with io.EOF
	}()
	var rc io.ReadCloser = pr
	if onRead != nil {
		rc = &progressReader{rc: pr, kind: l.kind, digest: l.digest, total: l.size, fn: onRead}
	}
	return rc, nil
}

// Uncompressed implements v1.Layer.
func (l *fileLayer) Uncompressed() (io.ReadCloser, error) {
	pr, pw := io.Pipe()
	go func() {
		bw := bufio.NewWriterSize(pw, pipeBufSize)
		tw := tar.NewWriter(bw)
		err := writeEntries(context.Background(), tw, l.entries)
		if err == nil {
			err = tw.Close()
		}
		if err == nil {
			err = bw.Flush()
		}
		pw.CloseWithError(err)
	}()
	return pr, nil
}

// setProgress installs the progress hook used by later Compressed calls.
func (l *fileLayer) setProgress(fn func(kind string, digest v1.Hash, done, total int64)) {
	l.mu.Lock()
	l.onRead = fn
	l.mu.Unlock()
}

// progressReader reports bytes read, at most once per progressStep and at EOF.
type progressReader struct {
	rc     io.ReadCloser
	kind   string
	digest v1.Hash
	total  int64
	done   int64
	last   int64
	fn     func(kind string, digest v1.Hash, done, total int64)
}

const progressStep = 1 << 20

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.rc.Read(b)
	p.done += int64(n)
	if p.done-p.last >= progressStep || (err == io.EOF && p.done != p.last) || (p.done == p.total && p.done != p.last) {
		p.last = p.done
		p.fn(p.kind, p.digest, p.done, p.total)
	}
	return n, err
}

func (p *progressReader) Close() error { return p.rc.Close() }

// validName reports whether name is an acceptable relative file name inside
// one of our directories: slash-separated, clean, made of letters, digits,
// '.', '_' and '-', with no empty, "." or ".." element, at most 255 bytes.
func validName(name string) error {
	if name == "" {
		return errors.New("is empty")
	}
	if len(name) > 255 {
		return fmt.Errorf("is %d bytes long, more than 255", len(name))
	}
	for _, elem := range strings.Split(name, "/") {
		switch elem {
		case "":
			return errors.New("has an empty path element (leading, trailing or double slash)")
		case ".", "..":
			return fmt.Errorf("has a %q path element", elem)
		}
		for _, r := range elem {
			ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'
			if !ok {
				return fmt.Errorf("has the character %q (allowed: letters, digits, '.', '_', '-', '/')", r)
			}
		}
	}
	return nil
}
