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
// the new one, never neither. Requests are proxied by one ReverseProxy over a
// shared keep-alive Transport.
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

type table struct {
	services map[string]*url.URL
	models   map[string]*url.URL
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
	proxy  *httputil.ReverseProxy
	tr     http.RoundTripper
}

type ctxKey struct{}

type target struct {
	base *url.URL
	path string
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
	g.proxy = &httputil.ReverseProxy{
		Transport:     g.tr,
		FlushInterval: -1,
		Rewrite: func(pr *httputil.ProxyRequest) {
			t := pr.In.Context().Value(ctxKey{}).(target)
			pr.Out.URL.Scheme = t.base.Scheme
			pr.Out.URL.Host = t.base.Host
			pr.Out.URL.Path = t.path
			pr.Out.URL.RawPath = ""
			pr.Out.Host = t.base.Host
			pr.Out.Header.Del("Authorization") // the local key is not the scorer's business
			pr.SetXForwarded()
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if errors.Is(err, context.Canceled) {
				return
			}
			g.log.Warn("backend failed", "path", r.URL.Path, "err", err)
			writeErr(w, r, http.StatusBadGateway, "bad_gateway", "backend failed: "+err.Error())
		},
	}
	return g
}

// SetRoutes replaces the route table atomically.
func (g *Gateway) SetRoutes(routes []Route) {
	t := &table{services: map[string]*url.URL{}, models: map[string]*url.URL{}}
	for _, r := range routes {
		if r.Backend == nil {
			continue
		}
		t.services[r.Service] = r.Backend
		model := r.Model
		if model == "" {
			model = r.Service
		}
		t.models[model] = r.Backend
	}
	g.routes.Store(t)
}

// Routes returns the service names routed now, with their backends.
func (g *Gateway) Routes() map[string]string {
	t := g.routes.Load()
	out := make(map[string]string, len(t.services))
	for k, v := range t.services {
		out[k] = v.String()
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
		base, ok := t.models[model]
		if !ok {
			writeErr(w, r, http.StatusServiceUnavailable, "unavailable", fmt.Sprintf("no service serves model %q", model))
			return
		}
		g.forward(w, r, base, p)
		return
	case strings.HasPrefix(p, "/services/"):
		name, rest, _ := strings.Cut(strings.TrimPrefix(p, "/services/"), "/")
		base, ok := t.services[name]
		if !ok {
			writeErr(w, r, http.StatusServiceUnavailable, "unavailable", fmt.Sprintf("service %q is not running here", name))
			return
		}
		g.forward(w, r, base, "/"+rest)
		return
	}
	writeErr(w, r, http.StatusNotFound, "not_found", fmt.Sprintf("no route for %q", p))
}

func (g *Gateway) forward(w http.ResponseWriter, r *http.Request, base *url.URL, path string) {
	ctx := context.WithValue(r.Context(), ctxKey{}, target{base: base, path: path})
	g.proxy.ServeHTTP(w, r.WithContext(ctx))
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
