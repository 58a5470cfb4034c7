//go:build unix

package handoff

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"

	"github.com/mlfleet/mlfleet/shared/errclass"
)

// Notify sends a message of a kind that carries no connection.
func Notify(uc *net.UnixConn, kind string) error {
	msg, err := Encode(Header{Kind: kind}, nil)
	if err != nil {
		return err
	}
	if _, err := uc.Write(msg); err != nil {
		return errclass.Wrap(errclass.Unavailable, err, "handoff %s", kind)
	}
	return nil
}

// Send passes c, and prefix (bytes already read from it, to be served
// first), over uc. The caller still owns c and closes its copy afterwards.
func Send(uc *net.UnixConn, h Header, prefix []byte, c syscall.Conn) error {
	msg, err := Encode(h, prefix)
	if err != nil {
		return err
	}
	raw, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("hand off connection: %w", err)
	}
	var werr error
	if err := raw.Control(func(fd uintptr) {
		var n, oobn int
		n, oobn, werr = uc.WriteMsgUnix(msg, syscall.UnixRights(int(fd)), nil)
		if werr == nil && (n != len(msg) || oobn == 0) {
			werr = fmt.Errorf("short write: %d of %d bytes", n, len(msg))
		}
	}); err != nil {
		return fmt.Errorf("hand off connection: %w", err)
	}
	if werr != nil {
		return errclass.Wrap(errclass.Unavailable, werr, "hand off connection")
	}
	return nil
}

// ErrNoConn is returned by Receive for a message that carried no
// descriptor.
var ErrNoConn = errors.New("handoff message carries no connection")

// Receive reads one message from uc and returns its header, its prefix and
// the passed connection (nil for kinds that carry none). Descriptors of a
// malformed message are closed.
// buf must hold MaxMessage bytes; the prefix aliases it.
func Receive(uc *net.UnixConn, buf []byte) (Header, []byte, net.Conn, error) {
	oob := make([]byte, syscall.CmsgSpace(4*4))
	n, oobn, flags, _, err := uc.ReadMsgUnix(buf[:MaxMessage], oob)
	if err != nil {
		return Header{}, nil, nil, err
	}
	if n == 0 && oobn == 0 {
		return Header{}, nil, nil, net.ErrClosed // seqpacket: the peer closed
	}
	fds, ferr := parseRights(oob[:oobn])
	closeAll := func() {
		for _, fd := range fds {
			_ = syscall.Close(fd)
		}
	}
	if ferr != nil {
		closeAll()
		return Header{}, nil, nil, ferr
	}
	if flags&(syscall.MSG_TRUNC|syscall.MSG_CTRUNC) != 0 {
		closeAll()
		return Header{}, nil, nil, errclass.Invalid("message", "handoff message truncated")
	}
	h, prefix, err := Decode(buf[:n])
	if err != nil {
		closeAll()
		return Header{}, nil, nil, err
	}
	if !CarriesConn(h.Kind) {
		closeAll()
		if len(fds) > 0 {
			return Header{}, nil, nil, errclass.Invalid("message", "a %s message carries %d descriptors, want none", h.Kind, len(fds))
		}
		return h, prefix, nil, nil
	}
	if len(fds) != 1 {
		closeAll()
		if len(fds) == 0 {
			return Header{}, nil, nil, ErrNoConn
		}
		return Header{}, nil, nil, errclass.Invalid("message", "handoff message carries %d descriptors, want 1", len(fds))
	}
	syscall.CloseOnExec(fds[0])
	f := os.NewFile(uintptr(fds[0]), "handoff")
	c, err := net.FileConn(f) // dups the descriptor
	f.Close()
	if err != nil {
		return Header{}, nil, nil, errclass.Invalid("message", "handed-off descriptor is not a connection: %v", err)
	}
	return h, prefix, c, nil
}

func parseRights(oob []byte) ([]int, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, errclass.Invalid("message", "handoff control message: %v", err)
	}
	var fds []int
	for _, m := range msgs {
		got, err := syscall.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		fds = append(fds, got...)
	}
	return fds, nil
}
