package imagebuild

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// LayerCache remembers the digests of layers made from unchanged files,
// so that a process building many images from the same scorer binaries
// (or rebuilding one model with a new manifest) hashes each file once.
// A file counts as unchanged while its path, size, modification time and
// inode are. It is safe for concurrent use; the zero value is not usable,
// use NewLayerCache.
type LayerCache struct {
	mu    sync.Mutex
	max   int
	m     map[string]layerSums
	order []string // insertion order, oldest first
}

type layerSums struct {
	digest, diffID v1.Hash
	size           int64
}

// NewLayerCache returns a cache holding up to max layers (the oldest is
// forgotten first); max <= 0 means 256.
func NewLayerCache(max int) *LayerCache {
	if max <= 0 {
		max = 256
	}
	return &LayerCache{max: max, m: map[string]layerSums{}}
}

func (c *LayerCache) get(key string) (layerSums, bool) {
	if c == nil {
		return layerSums{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.m[key]
	return s, ok
}

func (c *LayerCache) put(key string, s layerSums) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[key]; ok {
		return
	}
	for len(c.order) >= c.max {
		delete(c.m, c.order[0])
		c.order = c.order[1:]
	}
	c.m[key] = s
	c.order = append(c.order, key)
}

// cacheKey identifies a layer by everything that determines its bytes:
// kind, gzip level and each entry's name, mode and contents (by file
// identity for files, by hash for in-memory data).
func cacheKey(kind string, level int, entries []entry) string {
	h := sha256.New()
	var num [8]byte
	putInt := func(v uint64) {
		binary.BigEndian.PutUint64(num[:], v)
		h.Write(num[:])
	}
	putStr := func(s string) {
		putInt(uint64(len(s)))
		h.Write([]byte(s))
	}
	putStr(kind)
	putInt(uint64(level))
	for _, e := range entries {
		putStr(e.name)
		putInt(uint64(e.mode))
		putInt(uint64(e.size))
		switch {
		case e.dir:
			putStr("dir")
		case e.path != "":
			putStr("file")
			putStr(e.path)
			putInt(uint64(e.modTime))
			putInt(e.dev)
			putInt(e.ino)
		default:
			putStr("data")
			d := sha256.Sum256(e.data)
			h.Write(d[:])
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}
