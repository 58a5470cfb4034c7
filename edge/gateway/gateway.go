// Package gateway is mlfleet-edge's local scoring gateway: one HTTP port in
// front of every scoring service on the device.
//
//	/healthz                        the gateway's own health and handoff counters
//	/services/{name}/score          Azure-ML style scoring  -> backend /score
//	/services/{name}/swagger.json   the service's Swagger   -> backend /swagger.json
//	/services/{name}/invocations    MLflow scoring          -> backend /invocations
//	/services/{name}/{rest...}      anything else           -> backend /{rest...}
//	/v2/models/{model}[/...]        Open Inference Protocol, routed to the
//	                                service serving that model, path unchanged
//	/v2/health/live, /v2/health/ready   answered by the gateway
//
// Routes live in an immutable table behind an atomic pointer: SetRoutes
// swaps the whole table at once, so a request sees either the old backend or
// the new one, never neither.
//
// A scorer that listens on a handoff socket (Route.Handoff) gets the client's
// connection itself once the gateway has read and routed a request on it
// (see shared/handoff): the scorer answers that request and the following
// ones directly, so the gateway costs nothing per request on a keep-alive
// connection. The scorer hands the connection back for a request it does not
// serve (another service, the gateway's own endpoints) and when it drains
// before stopping; the gateway proxies that one request and routes the next.
// Everything else — scorers without a handoff socket, HTTP/1.0, chunked
// bodies, "Expect: 100-continue", requests before Serve runs — goes through
// a ReverseProxy per scorer, all sharing one keep-alive Transport and a pool
// of copy buffers.
package gateway

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mlfleet/mlfleet/shared/errclass"
	"github.com/mlfleet/mlfleet/shared/handoff"
)

// Route sends a service's traffic to one backend.
type Route struct {
	Service string
	// Model is the model name served under /v2/models/<Model>/.
	Model string
	// Backend is the scorer's base URL, e.g. http://127.0.0.1:41234.
	Backend *url.URL
	// Handoff, when set, is the path of the scorer's handoff socket.
	Handoff string
}

// scorer is one scorer and the ways to reach it.
type scorer struct {
	url     *url.URL
	proxy   *httputil.ReverseProxy
	handoff string // socket path; "" if the scorer takes no connections

	mu      sync.Mutex
	ctrl    *net.UnixConn // to the handoff socket, while connected
	retryAt time.Time     // no dial before this after a failed one
	// sendMu orders handoffs before the answer to the scorer's drain
	// notice: handoffs hold it shared, the answer exclusively.
	sendMu   sync.RWMutex
	draining atomic.Bool // the scorer is stopping: send it no connection
}

// entry is a route: the scorer, and the names it serves under.
type entry struct {
	b              *scorer
	service, model string
}

type table struct {
	services map[string]*entry
	models   map[string]*entry
}

// Config configures a Gateway.
type Config struct {
	// Key, when not empty, is required as "Authorization: Bearer <Key>" on
	// every route but /healthz.
	Key    string
	Logger *slog.Logger
	// Transport overrides the shared transport (tests).
	Transport http.RoundTripper
}

// Gateway routes scoring requests to services. Its zero value is not usable;
// make one with New. It is safe for concurrent use.
type Gateway struct {
	key     []byte
	keyHash string // handoff.KeyHash of key, for the scorers
	log     *slog.Logger
	routes  atomic.Pointer[table]
	tr      http.RoundTripper
	bufs    bufferPool

	// adopted takes connections scorers give back; set while Serve runs.
	adopted atomic.Pointer[handoff.Listener]
	// Counters of the handoff path.
	handedOff, returned, rejected atomic.Int64

	mu      sync.Mutex
	ctrls   map[*net.UnixConn]struct{} // open handoff connections
	readers sync.WaitGroup             // one per ctrl, reading returns
}

// bufferPool recycles the proxies' copy buffers (ReverseProxy otherwise
// allocates 32 KiB per request).
type bufferPool struct{ p sync.Pool }

const copyBufSize = 32 << 10

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, copyBufSize)
}

func (b *bufferPool) Put(buf []byte) {
	if cap(buf) != copyBufSize {
		return
	}
	buf = buf[:copyBufSize]
	b.p.Put(&buf)
}

// NewTransport returns the transport the gateway uses by default: keep-alive
// connections to local scorers, with enough idle connections per host for
// concurrent clients.
func NewTransport() *http.Transport {
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 5 * time.Minute,
		DisableCompression:    true,
		ForceAttemptHTTP2:     false,
	}
}

// New returns a gateway with no routes.
func New(cfg Config) *Gateway {
	g := &Gateway{key: []byte(cfg.Key), keyHash: handoff.KeyHash(cfg.Key), log: cfg.Logger, tr: cfg.Transport, ctrls: map[*net.UnixConn]struct{}{}}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	if g.tr == nil {
		g.tr = NewTransport()
	}
	g.routes.Store(&table{})
	return g
}

// newBackend makes the proxy of one scorer. Every proxy shares the
// gateway's transport (its keep-alive connections) and buffer pool.
func (g *Gateway) newBackend(base *url.URL) *scorer {
	return &scorer{url: base, proxy: &httputil.ReverseProxy{
		Transport:  g.tr,
		BufferPool: &g.bufs,
		// Responses with a length are written once at the end; streamed
		// ones (no length, text/event-stream) are flushed at once anyway.
		FlushInterval: 0,
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = base.Scheme
			pr.Out.URL.Host = base.Host
			pr.Out.URL.Path = backendPath(pr.In.URL.Path)
			pr.Out.URL.RawPath = ""
			pr.Out.Host = base.Host
			pr.Out.Header.Del("Authorization") // the local key is not the scorer's business
			pr.SetXForwarded()
		},
		ErrorHandler: g.backendFailed,
	}}
}

// backendPath maps a gateway path to the scorer's: /services/<name>/<rest>
// becomes /<rest>; /v2/ paths are kept.
func backendPath(p string) string {
	if rest, ok := strings.CutPrefix(p, "/services/"); ok {
		_, rest, _ = strings.Cut(rest, "/")
		return "/" + rest
	}
	return p
}

func (g *Gateway) backendFailed(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	g.log.Warn("backend failed", "path", r.URL.Path, "err", err)
	writeErr(w, r, http.StatusBadGateway, "bad_gateway", "backend failed: "+err.Error())
}

// SetRoutes replaces the route table atomically.
func (g *Gateway) SetRoutes(routes []Route) {
	t := &table{services: map[string]*entry{}, models: map[string]*entry{}}
	old := g.routes.Load()
	byURL := map[string]*scorer{}
	for _, e := range old.services {
		byURL[e.b.url.String()+" "+e.b.handoff] = e.b // keep the state of unchanged backends
	}
	for _, r := range routes {
		if r.Backend == nil {
			continue
		}
		key := r.Backend.String() + " " + r.Handoff
		b, ok := byURL[key]
		if !ok {
			b = g.newBackend(r.Backend)
			b.handoff = r.Handoff
			byURL[key] = b
		}
		model := r.Model
		if model == "" {
			model = r.Service
		}
		e := &entry{b: b, service: r.Service, model: model}
		t.services[r.Service] = e
		t.models[model] = e
	}
	g.routes.Store(t)
	if g.adopted.Load() != nil {
		g.connectAll()
	}
}

// connectAll opens the handoff connection of every routed scorer that has
// none, so that each scorer can give connections back to this gateway even
// when an earlier gateway (before a daemon restart) handed them over.
func (g *Gateway) connectAll() {
	for _, e := range g.routes.Load().services {
		if e.b.handoff != "" {
			g.control(e.b)
		}
	}
}

// Routes returns the service names routed now, with their backends.
func (g *Gateway) Routes() map[string]string {
	t := g.routes.Load()
	out := make(map[string]string, len(t.services))
	for k, e := range t.services {
		out[k] = e.b.url.String()
	}
	return out
}

// HandoffStats counts connections handed to scorers, given back by them,
// and handoff messages refused.
func (g *Gateway) HandoffStats() (handedOff, returned, rejected int64) {
	return g.handedOff.Load(), g.returned.Load(), g.rejected.Load()
}

// CloseIdleConnections drops idle connections to backends (after a backend
// goes away).
func (g *Gateway) CloseIdleConnections() {
	if c, ok := g.tr.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// ServeHTTP routes one request.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	if p == "/healthz" {
		handed, returned, rejected := g.HandoffStats()
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "services": len(g.routes.Load().services),
			"handoff": map[string]int64{"handedOff": handed, "returned": returned, "rejected": rejected}})
		return
	}
	if len(g.key) > 0 && !g.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="mlfleet-edge"`)
		writeErr(w, r, http.StatusUnauthorized, "unauthenticated", "missing or wrong bearer key")
		return
	}
	t := g.routes.Load()
	var e *entry
	switch {
	case p == "/v2/health/live":
		writeJSON(w, http.StatusOK, map[string]any{"live": true})
		return
	case p == "/v2/health/ready":
		writeJSON(w, http.StatusOK, map[string]any{"ready": len(t.services) > 0})
		return
	case strings.HasPrefix(p, "/v2/models/"):
		model, _, _ := strings.Cut(strings.TrimPrefix(p, "/v2/models/"), "/")
		if e = t.models[model]; e == nil {
			writeErr(w, r, http.StatusServiceUnavailable, "unavailable", fmt.Sprintf("no service serves model %q", model))
			return
		}
	case strings.HasPrefix(p, "/services/"):
		name, _, _ := strings.Cut(strings.TrimPrefix(p, "/services/"), "/")
		if e = t.services[name]; e == nil {
			writeErr(w, r, http.StatusServiceUnavailable, "unavailable", fmt.Sprintf("service %q is not running here", name))
			return
		}
	default:
		writeErr(w, r, http.StatusNotFound, "not_found", fmt.Sprintf("no route for %q", p))
		return
	}
	if g.handOff(w, r, e) {
		return
	}
	e.b.proxy.ServeHTTP(w, r) // Rewrite maps the path with backendPath
}

// handOff passes the connection of r, with r unread, to e's scorer. It
// reports false, having touched nothing, when r is to be proxied instead.
func (g *Gateway) handOff(w http.ResponseWriter, r *http.Request, e *entry) bool {
	b := e.b
	if b.handoff == "" || b.draining.Load() || r.Close || !handoff.Eligible(r) {
		return false
	}
	b.sendMu.RLock()
	defer b.sendMu.RUnlock()
	if b.draining.Load() {
		return false
	}
	if ac, ok := r.Context().Value(adoptedKey{}).(*adoptedConn); ok && ac.proxyNext.Swap(false) {
		return false // it just came back: proxy this one request
	}
	adopted := g.adopted.Load()
	if adopted == nil {
		return false
	}
	ctrl := g.control(b)
	if ctrl == nil {
		return false
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return false
	}
	prefix := handoff.Hijacked(r, conn, brw)
	sc, ok := conn.(syscall.Conn)
	if ok {
		err = handoff.Send(ctrl, handoff.Header{Kind: handoff.KindServe, Service: e.service, Model: e.model, KeySHA256: g.keyHash}, prefix, sc)
	}
	if !ok || err != nil {
		// Keep the client: serve the connection here again, this request
		// through the proxy.
		g.log.Warn("handoff failed; proxying", "service", e.service, "err", err)
		if err != nil && !errclass.Is(err, errclass.TooLarge) {
			g.dropControl(b, ctrl)
		}
		g.adopt(adopted, conn, prefix)
		return true
	}
	conn.Close() // the scorer has its own copy
	g.handedOff.Add(1)
	return true
}

// adoptedConn is a client connection the gateway serves again after a
// scorer gave it back (or a handoff failed).
type adoptedConn struct {
	*handoff.Conn
	proxyNext atomic.Bool // proxy the first request instead of handing it off
}

type adoptedKey struct{}

// adopt serves c again, starting with prefix, its first request proxied.
func (g *Gateway) adopt(l *handoff.Listener, c net.Conn, prefix []byte) {
	if ac, ok := c.(*adoptedConn); ok {
		c = ac.Conn.Conn // Hijacked took its pending bytes into prefix
	}
	ac := &adoptedConn{Conn: handoff.NewConn(c, prefix)}
	ac.proxyNext.Store(true)
	if !l.Push(ac) {
		c.Close()
	}
}

// control returns the connection to b's handoff socket, dialing it (and
// starting its reader) if needed; nil if the scorer takes no connections
// now.
func (g *Gateway) control(b *scorer) *net.UnixConn {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ctrl != nil {
		return b.ctrl
	}
	if time.Now().Before(b.retryAt) {
		return nil
	}
	c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: b.handoff, Net: "unixpacket"})
	if err != nil {
		b.retryAt = time.Now().Add(2 * time.Second)
		g.log.Debug("no handoff socket; proxying", "socket", b.handoff, "err", err)
		return nil
	}
	g.mu.Lock()
	if g.ctrls == nil { // Serve has ended
		g.mu.Unlock()
		c.Close()
		return nil
	}
	g.ctrls[c] = struct{}{}
	g.readers.Add(1)
	g.mu.Unlock()
	b.ctrl = c
	go g.readReturns(b, c)
	return c
}

// dropControl forgets ctrl as b's handoff connection and closes it.
func (g *Gateway) dropControl(b *scorer, ctrl *net.UnixConn) {
	b.mu.Lock()
	if b.ctrl == ctrl {
		b.ctrl = nil
		b.retryAt = time.Now().Add(2 * time.Second)
	}
	b.mu.Unlock()
	ctrl.Close()
}

// readReturns takes the connections b's scorer gives back, until ctrl
// closes (the scorer exits, or Serve ends).
func (g *Gateway) readReturns(b *scorer, ctrl *net.UnixConn) {
	defer g.readers.Done()
	defer func() {
		g.dropControl(b, ctrl)
		g.mu.Lock()
		delete(g.ctrls, ctrl)
		g.mu.Unlock()
	}()
	buf := make([]byte, handoff.MaxMessage)
	for {
		hdr, prefix, conn, err := handoff.Receive(ctrl, buf)
		if err != nil {
			if c := errclass.ClassOf(err); c == errclass.InvalidArgument || c == errclass.TooLarge || errors.Is(err, handoff.ErrNoConn) {
				g.rejected.Add(1)
				g.log.Warn("handoff: message refused", "socket", b.handoff, "err", err)
				continue
			}
			return
		}
		switch hdr.Kind {
		case handoff.KindReturn:
		case handoff.KindDrain:
			// Answer once no handoff is on its way: the socket is ordered,
			// so the scorer has them all when it reads the answer.
			b.sendMu.Lock()
			b.draining.Store(true)
			err := handoff.Notify(ctrl, handoff.KindDrained)
			b.sendMu.Unlock()
			if err != nil {
				return
			}
			continue
		default:
			g.rejected.Add(1)
			if conn != nil {
				conn.Close()
			}
			continue
		}
		if hdr.Reason == handoff.ReasonDraining {
			b.draining.Store(true)
		}
		g.returned.Add(1)
		l := g.adopted.Load()
		if l == nil {
			conn.Close()
			continue
		}
		g.adopt(l, conn, bytes.Clone(prefix))
	}
}

func (g *Gateway) authorized(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(tok), g.key) == 1
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// writeErr answers in the Open Inference Protocol's shape on /v2 routes
// ({"error": "..."}) and in the API's shape elsewhere.
func writeErr(w http.ResponseWriter, r *http.Request, code int, class, msg string) {
	if strings.HasPrefix(r.URL.Path, "/v2/") {
		writeJSON(w, code, map[string]string{"error": msg})
		return
	}
	writeJSON(w, code, map[string]any{"error": map[string]string{"code": class, "message": msg}})
}

// Serve serves the gateway on ln until ctx ends, then shuts down gracefully
// (in-flight requests get up to 5 s).
// Connections handed to scorers stay with them.
func (g *Gateway) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           g,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(g.log.Handler(), slog.LevelWarn),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if ac, ok := c.(*adoptedConn); ok {
				return context.WithValue(ctx, adoptedKey{}, ac)
			}
			return ctx
		},
	}
	adopted := handoff.NewListener(ln.Addr())
	if !g.adopted.CompareAndSwap(nil, adopted) {
		return errors.New("gateway: Serve called twice")
	}
	g.connectAll()
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()
	go func() { errc <- srv.Serve(adopted) }()
	running := 2
	var err error
	select {
	case err = <-errc:
		running--
		err = fmt.Errorf("gateway on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	g.adopted.Store(nil)
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if serr := srv.Shutdown(sctx); serr != nil {
		_ = srv.Close()
	}
	for ; running > 0; running-- {
		<-errc
	}
	g.mu.Lock()
	for c := range g.ctrls {
		c.Close()
	}
	g.ctrls = nil
	g.mu.Unlock()
	g.readers.Wait()
	return err
}
