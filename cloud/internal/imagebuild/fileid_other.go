//go:build !unix

package imagebuild

import "io/fs"

// fileID is not available here; LayerCache keys use path, size and
// modification time only.
func fileID(fs.FileInfo) (dev, ino uint64) { return 0, 0 }
