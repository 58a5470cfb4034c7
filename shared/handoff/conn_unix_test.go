//go:build unix

package handoff

import (
	"bufio"
	"io"
	"net"
	"path/filepath"
	"syscall"
	"testing"
)

// pair returns both ends of a unix seqpacket connection.
func pair(t *testing.T) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: filepath.Join(t.TempDir(), "h.sock"), Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.DialUnix("unixpacket", nil, ln.Addr().(*net.UnixAddr))
	if err != nil {
		t.Fatal(err)
	}
	server, err := ln.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// TestPassConnection hands a live TCP connection over and serves it from
// the other side: the client never notices.
func TestPassConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	accepted, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := peer.Write([]byte("hello\nworld\n")); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(accepted)
	first, err := br.ReadString('\n')
	if err != nil || first != "hello\n" {
		t.Fatalf("read %q %v", first, err)
	}
	// "world\n" may sit in br: it travels as the prefix.
	buffered, _ := br.Peek(br.Buffered())

	gw, sc := pair(t)
	h := Header{Kind: KindServe, Service: "iris", Model: "iris"}
	if err := Send(gw, h, buffered, accepted.(syscall.Conn)); err != nil {
		t.Fatal(err)
	}
	accepted.Close() // the sender's copy

	buf := make([]byte, MaxMessage)
	gotH, prefix, c, err := Receive(sc, buf)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if gotH != h {
		t.Fatalf("header %+v, want %+v", gotH, h)
	}
	rest := bufio.NewReader(io.MultiReader(bytesReader(prefix), c))
	second, err := rest.ReadString('\n')
	if err != nil || second != "world\n" {
		t.Fatalf("read %q %v after handoff", second, err)
	}
	if _, err := c.Write([]byte("answered\n")); err != nil {
		t.Fatal(err)
	}
	got, err := bufio.NewReader(peer).ReadString('\n')
	if err != nil || got != "answered\n" {
		t.Fatalf("peer read %q %v", got, err)
	}
}

func TestReceiveWithoutDescriptor(t *testing.T) {
	gw, sc := pair(t)
	msg, err := Encode(Header{Kind: KindReturn, Reason: ReasonDraining}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gw.Write(msg); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := Receive(sc, make([]byte, MaxMessage)); err != ErrNoConn {
		t.Fatalf("got %v, want ErrNoConn", err)
	}
}

func TestNotify(t *testing.T) {
	gw, sc := pair(t)
	if err := Notify(sc, KindDrain); err != nil {
		t.Fatal(err)
	}
	h, _, c, err := Receive(gw, make([]byte, MaxMessage))
	if err != nil || h.Kind != KindDrain || c != nil {
		t.Fatalf("got %+v %v %v, want a drain notice", h, c, err)
	}
	// A notice with a descriptor is refused (and the descriptor closed).
	msg, _ := Encode(Header{Kind: KindDrained}, nil)
	refusedAndClosed(t, gw, sc, msg)
}

// TestReceiveMalformedClosesDescriptor: garbage with a descriptor is
// refused and the descriptor closed.
func TestReceiveMalformedClosesDescriptor(t *testing.T) {
	gw, sc := pair(t)
	refusedAndClosed(t, gw, sc, []byte("garbage"))
}

// refusedAndClosed sends msg with a pipe's read end from gw; Receive on sc
// must refuse it and close the received copy (the pipe's last reader).
func refusedAndClosed(t *testing.T, gw, sc *net.UnixConn, msg []byte) {
	t.Helper()
	r, w, err := osPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, _, err := gw.WriteMsgUnix(msg, syscall.UnixRights(int(r.Fd())), nil); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if _, _, _, err := Receive(sc, make([]byte, MaxMessage)); err == nil {
		t.Fatalf("%q with a descriptor accepted", msg)
	}
	if _, err := w.Write([]byte("x")); err == nil {
		t.Fatal("write to a pipe with no reader succeeded: a descriptor leaked")
	}
}

func TestReceiveAfterPeerClosed(t *testing.T) {
	gw, sc := pair(t)
	gw.Close()
	if _, _, _, err := Receive(sc, make([]byte, MaxMessage)); err == nil {
		t.Fatal("no error after the peer closed")
	}
}
