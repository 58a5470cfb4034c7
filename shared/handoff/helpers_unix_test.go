//go:build unix

package handoff

import (
	"bytes"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

// osPipe returns a pipe whose writes fail with EPIPE (not SIGPIPE) once
// the reader is gone.
func osPipe() (*os.File, *os.File, error) {
	signal.Ignore(syscall.SIGPIPE)
	return os.Pipe()
}
