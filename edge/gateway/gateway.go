// Package gateway is mlfleet-edge's local scoring gateway: one HTTP port in
// front of every scoring service on the device.
//
//	/healthz                        the gateway's own health
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
// the new one, never neither. Each scorer has its own ReverseProxy (made
// when its route appears, so a request allocates no routing state); all of
// them share one keep-alive Transport and a pool of copy buffers.
package gateway

import (
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
	"time"
)

// Route sends a service's traffic to one backend.
type Route struct {
	Service string
	// Model is the model name served under /v2/models/<Model>/.
	Model string
	// Backend is the scorer's base URL, e.g. http://127.0.0.1:41234.
	Backend *url.URL
}

// scorer is one scorer and the proxy that reaches it.
type scorer struct {
	url   *url.URL
	proxy *httputil.ReverseProxy
}

type table struct {
	services map[string]*scorer
	models   map[string]*scorer
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
	key    []byte
	log    *slog.Logger
	routes atomic.Pointer[table]
	tr     http.RoundTripper
	bufs   bufferPool
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
	g := &Gateway{key: []byte(cfg.Key), log: cfg.Logger, tr: cfg.Transport}
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
	t := &table{services: map[string]*scorer{}, models: map[string]*scorer{}}
	old := g.routes.Load()
	byURL := map[string]*scorer{}
	for _, b := range old.services {
		byURL[b.url.String()] = b // keep the proxies of unchanged backends
	}
	for _, r := range routes {
		if r.Backend == nil {
			continue
		}
		b, ok := byURL[r.Backend.String()]
		if !ok {
			b = g.newBackend(r.Backend)
			byURL[r.Backend.String()] = b
		}
		t.services[r.Service] = b
		model := r.Model
		if model == "" {
			model = r.Service
		}
		t.models[model] = b
	}
	g.routes.Store(t)
}

// Routes returns the service names routed now, with their backends.
func (g *Gateway) Routes() map[string]string {
	t := g.routes.Load()
	out := make(map[string]string, len(t.services))
	for k, v := range t.services {
		out[k] = v.url.String()
	}
	return out
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
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "services": len(g.routes.Load().services)})
		return
	}
	if len(g.key) > 0 && !g.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="mlfleet-edge"`)
		writeErr(w, r, http.StatusUnauthorized, "unauthenticated", "missing or wrong bearer key")
		return
	}
	t := g.routes.Load()
	switch {
	case p == "/v2/health/live":
		writeJSON(w, http.StatusOK, map[string]any{"live": true})
		return
	case p == "/v2/health/ready":
		writeJSON(w, http.StatusOK, map[string]any{"ready": len(t.services) > 0})
		return
	case strings.HasPrefix(p, "/v2/models/"):
		model, _, _ := strings.Cut(strings.TrimPrefix(p, "/v2/models/"), "/")
		b, ok := t.models[model]
		if !ok {
			writeErr(w, r, http.StatusServiceUnavailable, "unavailable", fmt.Sprintf("no service serves model %q", model))
			return
		}
		b.proxy.ServeHTTP(w, r)
		return
	case strings.HasPrefix(p, "/services/"):
		name, _, _ := strings.Cut(strings.TrimPrefix(p, "/services/"), "/")
		b, ok := t.services[name]
		if !ok {
			writeErr(w, r, http.StatusServiceUnavailable, "unavailable", fmt.Sprintf("service %q is not running here", name))
			return
		}
		b.proxy.ServeHTTP(w, r) // Rewrite maps the path with backendPath
		return
	}
	writeErr(w, r, http.StatusNotFound, "not_found", fmt.Sprintf("no route for %q", p))
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
func (g *Gateway) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           g,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(g.log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("gateway on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	<-errc
	return nil
}
