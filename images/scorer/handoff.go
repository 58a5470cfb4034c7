package scorer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mlfleet/mlfleet/shared/errclass"
	"github.com/mlfleet/mlfleet/shared/handoff"
)

// The handoff server takes client connections that mlfleet-edge's gateway
// passes over its unix socket (see shared/handoff) and serves them with the
// same handler as the TCP port, so the gateway leaves the data path after
// routing. On such a connection:
//
//   - /services/<service>/<rest> is served as /<rest> and /v2/models/<model>/...
//     as is, for the service and model the gateway routed here; the gateway's
//     local key, if any, is required as it would be by the gateway.
//   - A request for anything else (another service, the gateway's own
//     endpoints) hands the connection back to the gateway, which routes it.
//   - Draining (Serve's context ended): the next request on every connection
//     goes back to the gateway, so a blue/green switch moves keep-alive
//     clients to the new version without failing a request. Connections that
//     send nothing for drainWindow are closed as idle ones always are.
//
// Connections travel back only inside a handler (http.Hijacker), where the
// server accounts for every byte it has read; an idle connection may hold a
// byte the server read ahead, so it is never passed back from outside.
type handoffServer struct {
	s     *Server
	log   *slog.Logger
	ln    *net.UnixListener
	srv   *http.Server
	conns *handoff.Listener

	draining atomic.Bool
	served   atomic.Int64 // connections taken
	returned atomic.Int64 // connections handed back
	rejected atomic.Int64 // malformed messages

	mu    sync.Mutex
	live  map[*handedConn]struct{}
	ctrls map[*net.UnixConn]bool // gateway connections: true once it answered drain
	// settled is closed once draining, with no connection served here and
	// every gateway's drain answered: nothing more can arrive.
	settled chan struct{}
	wg      sync.WaitGroup
}

// listenHandoff creates the handoff socket at path (replacing a stale one).
func listenHandoff(s *Server, path string) (*handoffServer, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("handoff socket %s: %w", path, err)
	}
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		return nil, fmt.Errorf("handoff socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("handoff socket %s: %w", path, err)
	}
	h := &handoffServer{
		s: s, log: s.cfg.Logger, ln: ln,
		conns:   handoff.NewListener(ln.Addr()),
		live:    map[*handedConn]struct{}{},
		ctrls:   map[*net.UnixConn]bool{},
		settled: make(chan struct{}),
	}
	h.srv = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.cfg.Logger.Handler(), slog.LevelWarn),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, handedKey{}, c)
		},
		ConnState: h.connState,
	}
	return h, nil
}

type handedKey struct{}

// start accepts gateway connections and serves handed-off clients until
// close; the goroutines are h's.
func (h *handoffServer) start() {
	h.wg.Add(2)
	go func() {
		defer h.wg.Done()
		_ = h.srv.Serve(h.conns)
	}()
	go func() {
		defer h.wg.Done()
		for {
			ctrl, err := h.ln.AcceptUnix()
			if err != nil {
				return
			}
			h.mu.Lock()
			h.ctrls[ctrl] = false
			h.mu.Unlock()
			if h.draining.Load() {
				h.notifyDrain(ctrl)
			}
			h.wg.Add(1)
			go func() {
				defer h.wg.Done()
				h.receive(ctrl)
			}()
		}
	}()
}

// receive takes the connections one gateway hands over.
func (h *handoffServer) receive(ctrl *net.UnixConn) {
	defer func() {
		h.mu.Lock()
		delete(h.ctrls, ctrl) // a gateway gone sends nothing more
		h.checkSettled()
		h.mu.Unlock()
		ctrl.Close()
	}()
	buf := make([]byte, handoff.MaxMessage)
	for {
		hdr, prefix, conn, err := handoff.Receive(ctrl, buf)
		if err != nil {
			if c := errclass.ClassOf(err); c == errclass.InvalidArgument || c == errclass.TooLarge || errors.Is(err, handoff.ErrNoConn) {
				h.rejected.Add(1)
				h.log.Warn("handoff: message rejected", "err", err)
				continue
			}
			h.log.Debug("handoff: gateway connection ends", "err", err)
			return // the gateway went away, or close
		}
		switch hdr.Kind {
		case handoff.KindServe:
		case handoff.KindDrained:
			h.mu.Lock()
			if _, ok := h.ctrls[ctrl]; ok {
				h.ctrls[ctrl] = true
			}
			h.checkSettled()
			h.mu.Unlock()
			continue
		default:
			h.rejected.Add(1)
			if conn != nil {
				conn.Close()
			}
			continue
		}
		hc := &handedConn{Conn: handoff.NewConn(conn, bytes.Clone(prefix)), ctrl: ctrl, hdr: hdr}
		// Counted from now, not from when the server picks it up: a
		// draining scorer waits for it (its first request is in prefix).
		h.mu.Lock()
		h.live[hc] = struct{}{}
		h.mu.Unlock()
		h.served.Add(1)
		if !h.conns.Push(hc) {
			h.served.Add(-1)
			h.forget(hc)
			conn.Close()
			return
		}
	}
}

func (h *handoffServer) connState(c net.Conn, st http.ConnState) {
	hc, ok := c.(*handedConn)
	if !ok {
		return
	}
	if st == http.StateClosed { // a hijacked one is forgotten by giveBack, once sent
		h.forget(hc)
	}
}

// forget drops a connection that is no longer served here.
func (h *handoffServer) forget(hc *handedConn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.live, hc)
	h.checkSettled()
}

// checkSettled closes h.settled when draining is done; h.mu is held.
func (h *handoffServer) checkSettled() {
	if !h.draining.Load() || len(h.live) > 0 {
		return
	}
	for _, drained := range h.ctrls {
		if !drained {
			return
		}
	}
	select {
	case <-h.settled:
	default:
		close(h.settled)
	}
}

// notifyDrain asks the gateway on ctrl to send nothing more.
func (h *handoffServer) notifyDrain(ctrl *net.UnixConn) {
	if err := handoff.Notify(ctrl, handoff.KindDrain); err != nil {
		h.mu.Lock()
		delete(h.ctrls, ctrl) // it cannot send either
		h.checkSettled()
		h.mu.Unlock()
	}
}

// drainWindow is how long a draining scorer waits for the next request of
// its connections, to give them back, before it closes the idle ones.
const drainWindow = 5 * time.Second

// drain starts giving every connection back at its next request, and asks
// the gateways to send no more.
func (h *handoffServer) drain() {
	h.draining.Store(true)
	h.mu.Lock()
	ctrls := make([]*net.UnixConn, 0, len(h.ctrls))
	for c := range h.ctrls {
		ctrls = append(ctrls, c)
	}
	h.checkSettled()
	h.mu.Unlock()
	for _, c := range ctrls {
		h.notifyDrain(c)
	}
}

// close waits up to window (and until ctx ends) for every connection to be
// given back or finished, then closes the rest, the gateway connections and
// the socket.
func (h *handoffServer) close(ctx context.Context, window time.Duration) error {
	if !h.draining.Load() {
		h.drain()
	}
	timer := time.NewTimer(window)
	defer timer.Stop()
	select {
	case <-h.settled:
	case <-timer.C:
	case <-ctx.Done():
	}
	err := h.srv.Shutdown(ctx)
	h.conns.Close()
	h.ln.Close()
	h.mu.Lock()
	for c := range h.ctrls {
		c.Close()
	}
	h.mu.Unlock()
	h.wg.Wait()
	if n := h.served.Load(); n > 0 {
		h.log.Info("handoff: closed", "served", n, "returned", h.returned.Load(), "rejected", h.rejected.Load())
	}
	return err
}

// ServeHTTP serves one request of a handed-off connection.
func (h *handoffServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hc, _ := r.Context().Value(handedKey{}).(*handedConn)
	if hc == nil {
		http.Error(w, "not a handed-off connection", http.StatusInternalServerError)
		return
	}
	if h.draining.Load() {
		h.giveBack(w, r, hc, handoff.ReasonDraining)
		return
	}
	p := r.URL.Path
	var inner string
	switch {
	case strings.HasPrefix(p, "/services/"):
		name, rest, _ := strings.Cut(p[len("/services/"):], "/")
		if name != hc.hdr.Service {
			h.giveBack(w, r, hc, handoff.ReasonForeign)
			return
		}
		inner = "/" + rest
	case strings.HasPrefix(p, "/v2/models/"):
		model, _, _ := strings.Cut(p[len("/v2/models/"):], "/")
		if model != hc.hdr.Model {
			h.giveBack(w, r, hc, handoff.ReasonForeign)
			return
		}
		inner = p
	default:
		h.giveBack(w, r, hc, handoff.ReasonForeign)
		return
	}
	if hc.hdr.KeySHA256 != "" && !handoff.KeyMatches(r.Header.Get("Authorization"), hc.hdr.KeySHA256) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="mlfleet-edge"`)
		if strings.HasPrefix(p, "/v2/") {
			writeV2Error(w, http.StatusUnauthorized, "missing or wrong bearer key")
			return
		}
		writeRaw(w, http.StatusUnauthorized, []byte(`{"error":{"code":"unauthenticated","message":"missing or wrong bearer key"}}`))
		return
	}
	r2 := *r
	u := *r.URL
	u.Path, u.RawPath = inner, ""
	r2.URL = &u
	h.s.mux.ServeHTTP(w, &r2)
}

// giveBack hands the connection of r, with r unread, back to the gateway.
// A request that cannot travel (chunked body, Expect, HTTP/1.0) is
// answered here instead, and the connection closed after it.
func (h *handoffServer) giveBack(w http.ResponseWriter, r *http.Request, hc *handedConn, reason string) {
	if !handoff.Eligible(r) {
		w.Header().Set("Connection", "close")
		if reason == handoff.ReasonDraining {
			h.s.mux.ServeHTTP(w, r)
			return
		}
		writeRaw(w, http.StatusServiceUnavailable, []byte(`{"error":{"code":"unavailable","message":"this connection serves one service: send requests for others on a new connection"}}`))
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		writeRaw(w, http.StatusServiceUnavailable, []byte(`{"error":{"code":"unavailable","message":"cannot hand the connection back"}}`))
		return
	}
	defer h.forget(hc) // after the send: a draining scorer waits for it
	defer conn.Close()
	prefix := handoff.Hijacked(r, conn, brw)
	sc, ok := conn.(syscall.Conn)
	ctrl := h.ctrlFor(hc)
	if ok && ctrl != nil {
		err = handoff.Send(ctrl, handoff.Header{Kind: handoff.KindReturn, Reason: reason}, prefix, sc)
	}
	if !ok || ctrl == nil || err != nil {
		h.log.Warn("handoff: cannot hand a connection back", "reason", reason, "err", err)
		_, _ = conn.Write([]byte("HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"))
		return
	}
	h.returned.Add(1)
}

// ctrlFor returns the gateway connection to give hc back on: the one it came
// over, or, if that gateway is gone (the daemon restarted), any other; nil
// when no gateway is connected.
func (h *handoffServer) ctrlFor(hc *handedConn) *net.UnixConn {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.ctrls[hc.ctrl]; ok {
		return hc.ctrl
	}
	for c := range h.ctrls {
		return c
	}
	return nil
}

// handedConn is a client connection the gateway handed over.
type handedConn struct {
	*handoff.Conn
	ctrl *net.UnixConn // the gateway connection it came over, to give it back
	hdr  handoff.Header
}
