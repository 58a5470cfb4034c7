package handoff

import (
	"bufio"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"syscall"
)

// Conn is a connection whose first bytes were already read elsewhere: Read
// returns them before reading from the socket.
type Conn struct {
	net.Conn
	pending []byte
}

// NewConn returns c with prefix to be read first.
func NewConn(c net.Conn, prefix []byte) *Conn {
	return &Conn{Conn: c, pending: prefix}
}

// Read reads the pending bytes, then the socket.
func (c *Conn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// Pending returns the bytes not read yet.
func (c *Conn) Pending() []byte { return c.pending }

// SyscallConn returns the socket's raw connection, for Send.
func (c *Conn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errNotSocket
	}
	return sc.SyscallConn()
}

var errNotSocket = &net.OpError{Op: "handoff", Err: syscall.ENOTSOCK}

// Eligible reports whether r can be handed off as it stands: HTTP/1.1 in
// clear text, a body of known length (or none), no upgrade and no
// "Expect: 100-continue".
func Eligible(r *http.Request) bool {
	return r.ProtoMajor == 1 && r.ProtoMinor == 1 && r.TLS == nil &&
		r.ContentLength >= 0 && len(r.TransferEncoding) == 0 &&
		r.Header.Get("Expect") == "" && r.Header.Get("Upgrade") == ""
}

// AppendRequestHead appends r's request line and header as the client sent
// them (the header in canonical form and sorted order), for a request that
// is Eligible and whose body has not been read.
func AppendRequestHead(dst []byte, r *http.Request) []byte {
	dst = append(dst, r.Method...)
	dst = append(dst, ' ')
	dst = append(dst, r.RequestURI...)
	dst = append(dst, " HTTP/1.1\r\nHost: "...)
	dst = append(dst, r.Host...)
	dst = append(dst, "\r\n"...)
	if r.ContentLength > 0 || r.Header.Get("Content-Length") != "" {
		dst = append(dst, "Content-Length: "...)
		dst = strconv.AppendInt(dst, r.ContentLength, 10)
		dst = append(dst, "\r\n"...)
	}
	for _, k := range slices.Sorted(maps.Keys(r.Header)) {
		vs := r.Header[k]
		if k == "Host" || k == "Content-Length" || k == "Transfer-Encoding" {
			continue
		}
		for _, v := range vs {
			dst = append(dst, k...)
			dst = append(dst, ": "...)
			dst = append(dst, v...)
			dst = append(dst, "\r\n"...)
		}
	}
	return append(dst, "\r\n"...)
}

// Hijacked returns the bytes to serve first on the connection of r after
// hijacking it with r's body unread: r's head, then what the server had
// buffered, then what conn itself still holds (a *Conn, or a type that
// embeds one).
func Hijacked(r *http.Request, conn net.Conn, brw *bufio.ReadWriter) []byte {
	prefix := AppendRequestHead(make([]byte, 0, 512), r)
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		prefix = append(prefix, b...)
	}
	if pc, ok := conn.(interface{ Pending() []byte }); ok {
		prefix = append(prefix, pc.Pending()...)
	}
	return prefix
}

// Listener is a net.Listener of connections pushed to it: an http.Server
// serves connections that come back from elsewhere through it.
type Listener struct {
	c      chan net.Conn
	addr   net.Addr
	once   sync.Once
	closed chan struct{}
}

// NewListener returns a Listener reporting addr as its address.
func NewListener(addr net.Addr) *Listener {
	return &Listener{c: make(chan net.Conn), addr: addr, closed: make(chan struct{})}
}

// Push hands c to the next Accept. It reports false, and the caller keeps
// c, once the listener is closed.
func (l *Listener) Push(c net.Conn) bool {
	select {
	case l.c <- c:
		return true
	case <-l.closed:
		return false
	}
}

// Accept returns the next pushed connection.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.c:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// Close makes Accept and Push fail from now on.
func (l *Listener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

// Addr returns the address given to NewListener.
func (l *Listener) Addr() net.Addr { return l.addr }
