package scorer

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mlfleet/mlfleet/shared/handoff"
)

// handoffScorer serves iris_logreg with a handoff socket; it returns the
// server, a connection to the socket (the test plays the gateway) and the
// function that stops Serve and waits for it.
func handoffScorer(t *testing.T) (*Server, *net.UnixConn, func()) {
	t.Helper()
	ex := loadExample(t, "iris_logreg")
	cfg := writeManifest(t, ex.manifest(t, nil), "iris_logreg.onnx")
	cfg.HandoffSocket = filepath.Join(t.TempDir(), "h.sock")
	cfg.ShutdownTimeout = 10 * time.Second
	ts := startServer(t, cfg)
	s := ts.Server
	var once sync.Once
	stop := func() { once.Do(func() { ts.stop(t) }) } // may run on another goroutine than the cleanup
	t.Cleanup(stop)
	waitUntil(t, "handoff socket", func() bool { _, err := os.Stat(cfg.HandoffSocket); return err == nil })
	ctrl, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: cfg.HandoffSocket, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctrl.Close() })
	return s, ctrl, stop
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// tcpPair returns both ends of a TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

func scoreReq(body string) string {
	// In the order handoff.AppendRequestHead writes a head.
	return "POST /services/iris/score HTTP/1.1\r\nHost: device\r\nContent-Length: " + strconv.Itoa(len(body)) +
		"\r\nContent-Type: application/json\r\n\r\n" + body
}

// TestHandoffServesAndRefuses: well-formed handoffs are served as if the
// client had called the scorer; malformed messages are refused, counted and
// their descriptors closed, and the socket keeps working.
func TestHandoffServesAndRefuses(t *testing.T) {
	s, ctrl, _ := handoffScorer(t)
	body := `{"input_df":[{"sepal_length":5.1,"sepal_width":3.5,"petal_length":1.4,"petal_width":0.2}]}`

	// Garbage without a descriptor, a serve message without one, and a
	// "return" message with one: all refused.
	if _, err := ctrl.Write([]byte("garbage")); err != nil {
		t.Fatal(err)
	}
	msg, _ := handoff.Encode(handoff.Header{Kind: handoff.KindServe, Service: "iris", Model: "iris"}, nil)
	if _, err := ctrl.Write(msg); err != nil {
		t.Fatal(err)
	}
	victim, victimServer := tcpPair(t)
	if err := handoff.Send(ctrl, handoff.Header{Kind: handoff.KindReturn, Reason: handoff.ReasonForeign}, nil, victimServer.(syscall.Conn)); err != nil {
		t.Fatal(err)
	}
	victimServer.Close()
	waitUntil(t, "3 refusals", func() bool { return s.ho.Load().rejected.Load() == 3 })
	// The refused descriptor was closed: the victim sees EOF.
	_ = victim.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := victim.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("refused connection still open: %d %v", n, err)
	}

	// A real handoff: the first request travels as the prefix, the second
	// goes straight to the scorer.
	client, server := tcpPair(t)
	if err := handoff.Send(ctrl, handoff.Header{Kind: handoff.KindServe, Service: "iris", Model: "iris"}, []byte(scoreReq(body)), server.(syscall.Conn)); err != nil {
		t.Fatal(err)
	}
	server.Close()
	br := bufio.NewReader(client)
	for i := range 2 {
		if i == 1 {
			if _, err := client.Write([]byte(scoreReq(body))); err != nil {
				t.Fatal(err)
			}
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		b := make([]byte, resp.ContentLength)
		if _, err := io.ReadFull(br, b); err != nil || resp.StatusCode != 200 || !strings.Contains(string(b), `"label":0`) {
			t.Fatalf("response %d: %d %q %v", i, resp.StatusCode, b, err)
		}
	}
	if got := s.ho.Load().served.Load(); got != 1 {
		t.Fatalf("served %d connections, want 1", got)
	}
}

// TestHandoffGivesBack: a request for another route, and the next request
// after the scorer starts draining, come back to the gateway whole.
func TestHandoffGivesBack(t *testing.T) {
	srv, ctrl, stop := handoffScorer(t)
	client, server := tcpPair(t)
	if err := handoff.Send(ctrl, handoff.Header{Kind: handoff.KindServe, Service: "iris", Model: "iris"}, nil, server.(syscall.Conn)); err != nil {
		t.Fatal(err)
	}
	server.Close()
	buf := make([]byte, handoff.MaxMessage)
	receive := func(wantReason, wantPrefix string) net.Conn {
		t.Helper()
		_ = ctrl.SetReadDeadline(time.Now().Add(10 * time.Second))
		h, prefix, c, err := handoff.Receive(ctrl, buf)
		if err != nil {
			t.Fatal(err)
		}
		if h.Kind != handoff.KindReturn || h.Reason != wantReason || !strings.HasPrefix(string(prefix), wantPrefix) {
			t.Fatalf("got %+v %q, want a return (%s) starting %q", h, prefix, wantReason, wantPrefix)
		}
		return c
	}

	foreign := "GET /services/other/swagger.json HTTP/1.1\r\nHost: device\r\n\r\n"
	if _, err := client.Write([]byte(foreign)); err != nil {
		t.Fatal(err)
	}
	back := receive(handoff.ReasonForeign, foreign)
	// The gateway would serve it; hand it over again for the next step.
	if err := handoff.Send(ctrl, handoff.Header{Kind: handoff.KindServe, Service: "iris", Model: "iris"}, nil, back.(syscall.Conn)); err != nil {
		t.Fatal(err)
	}
	back.Close()

	s := srv
	go stop() // draining: the scorer asks the gateway to send no more
	waitUntil(t, "draining", func() bool { return s.ho.Load() != nil && s.ho.Load().draining.Load() })
	_ = ctrl.SetReadDeadline(time.Now().Add(10 * time.Second))
	if h, _, c, err := handoff.Receive(ctrl, buf); err != nil || h.Kind != handoff.KindDrain || c != nil {
		t.Fatalf("got %+v %v, want a drain notice", h, err)
	}
	if err := handoff.Notify(ctrl, handoff.KindDrained); err != nil {
		t.Fatal(err)
	}
	// The next request comes back whole.
	req := scoreReq(`{"input_df":[]}`)
	if _, err := client.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	receive(handoff.ReasonDraining, req).Close()
}
