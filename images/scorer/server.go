package scorer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mlfleet/mlfleet/images/onnx"
	"github.com/mlfleet/mlfleet/shared/errclass"
	"github.com/mlfleet/mlfleet/shared/manifest"
	"github.com/mlfleet/mlfleet/shared/profile"
)

// Defaults of Config.
const (
	DefaultManifest        = "/mlfleet/manifest.json"
	DefaultModelDir        = "/mlfleet/models"
	DefaultAddr            = ":8080"
	DefaultMaxBodyBytes    = 16 << 20
	DefaultMaxRows         = 10000
	DefaultQueueSize       = 64
	DefaultProfileWindow   = 60 * time.Second
	DefaultShutdownTimeout = 30 * time.Second
)

// Version is reported by GET /v2.
const Version = "0.1.0"

// Config configures a Server. Zero fields take the defaults above.
type Config struct {
	Manifest        string // path of the manifest document
	ModelDir        string // directory of the models (ModelRef.Path is relative to it)
	Addr            string // listen address for Run
	MaxBodyBytes    int64  // larger request bodies get 413
	MaxRows         int    // more rows per request get 400
	Workers         int    // requests scored at once; default GOMAXPROCS
	QueueSize       int    // requests waiting for a worker; more get 429
	ProfileWindow   time.Duration
	ShutdownTimeout time.Duration // how long Run waits for in-flight requests
	Logger          *slog.Logger  // default: text to stderr
	// HandoffSocket, when set, is the path of a unix socket on which
	// mlfleet-edge's gateway hands client connections over (see handoff.go).
	HandoffSocket string

	now         func() time.Time // for tests
	beforeInfer func()           // test hook: runs holding a worker slot
	noProfile   bool             // benchmarks: skip profiling
}

func (c *Config) applyDefaults() {
	if c.Manifest == "" {
		c.Manifest = DefaultManifest
	}
	if c.ModelDir == "" {
		c.ModelDir = DefaultModelDir
	}
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.MaxRows <= 0 {
		c.MaxRows = DefaultMaxRows
	}
	if c.Workers <= 0 {
		c.Workers = runtime.GOMAXPROCS(0)
	}
	if c.QueueSize < 0 {
		c.QueueSize = 0
	} else if c.QueueSize == 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.ProfileWindow <= 0 {
		c.ProfileWindow = DefaultProfileWindow
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if c.now == nil {
		c.now = time.Now
	}
}

// backend scores validated batches.
type backend interface {
	infer(ctx context.Context, b *batch) (*result, error)
	ready() bool
	start(ctx context.Context) // starts background work (the exec child)
	platform() string
	modelInputs() []onnx.IOInfo
}

// Server is the scoring server of one image.
type Server struct {
	cfg      Config
	man      *manifest.Manifest
	be       backend
	val      *validator
	prof     *profiler
	met      *metrics
	q        *queue
	mux      *http.ServeMux
	swagger  []byte
	concat   string // v2: the model input fed by the concatenated schema
	started  atomic.Bool
	shutdown atomic.Bool
	ho       atomic.Pointer[handoffServer] // while Serve runs with a handoff socket
}

// New loads the manifest and the model, binds the schema to the model and
// checks it by scoring the sample data. It starts no goroutines; for the
// exec runtime the child process starts in Serve.
func New(cfg Config) (*Server, error) {
	cfg.applyDefaults()
	f, err := os.Open(cfg.Manifest)
	if err != nil {
		return nil, fmt.Errorf("scorer: manifest: %w", err)
	}
	m, err := manifest.Read(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("scorer: manifest %s: %w", cfg.Manifest, err)
	}
	m.ApplyDefaults()
	s := &Server{cfg: cfg, man: m, val: newValidator(m.Schema), met: newMetrics(), q: newQueue(cfg.Workers, cfg.QueueSize)}
	switch m.Runtime {
	case manifest.RuntimeONNX:
		ob, err := loadONNX(m, cfg.ModelDir)
		if err != nil {
			return nil, fmt.Errorf("scorer: %w", err)
		}
		s.be = ob
		if ob.concat {
			s.concat = ob.feeds[0].name
		}
	case manifest.RuntimeExec:
		eb, err := newExec(m, filepath.Dir(cfg.Manifest), cfg.ModelDir, cfg.Logger)
		if err != nil {
			return nil, fmt.Errorf("scorer: %w", err)
		}
		s.be = eb
	default:
		return nil, errclass.Invalid("runtime", "scorer: unknown runtime %q", m.Runtime)
	}
	s.prof = newProfiler(m, cfg.ProfileWindow, cfg.now)
	if ob, ok := s.be.(*onnxBackend); ok && len(m.SampleData) > 0 {
		if err := s.checkSample(ob); err != nil {
			return nil, fmt.Errorf("scorer: scoring the manifest's sample data: %w", err)
		}
	}
	s.swagger, err = swaggerDoc(m)
	if err != nil {
		return nil, fmt.Errorf("scorer: swagger: %w", err)
	}
	s.routes()
	return s, nil
}

// checkSample scores the sample data once: it proves the binding works and
// gives the output features their bin edges.
func (s *Server) checkSample(ob *onnxBackend) error {
	b, err := s.val.validate(s.man.SampleData)
	if err != nil {
		return err
	}
	res, err := ob.infer(context.Background(), b)
	if err != nil {
		return err
	}
	vals := map[string][]float64{}
	w := profile.New(time.Time{})
	s.prof.observeOutputs(w, res)
	for _, o := range res.outs {
		if o.t.Kind != onnx.KindTensor || !o.t.DType.IsFloat() {
			continue
		}
		k := per(o.t, res.n)
		for r := 0; r < res.n; r++ {
			for j := 0; j < k && j < maxOutputColumns; j++ {
				name := o.name
				if k > 1 {
					if len(res.labels) == k {
						name += "[" + res.labels[j] + "]"
					} else {
						name += "[" + strconv.Itoa(j) + "]"
					}
				}
				vals[name] = append(vals[name], elemFloat(o.t, r*k+j))
			}
		}
	}
	for name, v := range vals {
		if _, ok := s.prof.outEdges[name]; !ok {
			s.prof.outEdges[name] = profile.QuantileEdges(v, sampleBins)
		}
	}
	return nil
}

// Handler is the server's HTTP handler.
func (s *Server) Handler() http.Handler { return s.mux }

// Run listens on cfg.Addr and serves until ctx ends (see Serve).
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("scorer: listen: %w", err)
	}
	return s.Serve(ctx, ln)
}

// Serve starts the backend (the exec child) and serves HTTP on ln until ctx
// ends; then it stops accepting, lets in-flight requests finish (up to
// ShutdownTimeout) and returns nil.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("scorer: Serve called twice")
	}
	bctx, stopBackend := context.WithCancel(context.Background())
	defer stopBackend()
	s.be.start(bctx)
	var ho *handoffServer
	if s.cfg.HandoffSocket != "" {
		var err error
		if ho, err = listenHandoff(s, s.cfg.HandoffSocket); err != nil {
			// The gateway proxies when it cannot hand connections over.
			s.cfg.Logger.Warn("scorer: no connection handoff", "err", err)
		} else {
			ho.start()
			s.ho.Store(ho)
		}
	}
	srv := &http.Server{Handler: s.mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(s.cfg.Logger.Handler(), slog.LevelWarn)}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.cfg.Logger.Info("scorer listening", "addr", ln.Addr().String(), "model", s.man.Name, "runtime", s.man.Runtime, "handoff", ho != nil)
	select {
	case err := <-errc:
		if ho != nil {
			hctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
			_ = ho.close(hctx, 0)
			cancel()
		}
		return fmt.Errorf("scorer: serve: %w", err)
	case <-ctx.Done():
	}
	s.shutdown.Store(true)
	if ho != nil {
		ho.drain()
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	<-errc
	if ho != nil {
		if herr := ho.close(sctx, min(drainWindow, s.cfg.ShutdownTimeout)); err == nil {
			err = herr
		}
	}
	stopBackend()
	if eb, ok := s.be.(*execBackend); ok {
		<-eb.stopped()
	}
	if err != nil {
		return fmt.Errorf("scorer: shutdown: %w", err)
	}
	return nil
}

func (s *Server) routes() {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /score", s.scoring("score", s.handleScore))
	mux.HandleFunc("POST /invocations", s.scoring("invocations", s.handleInvocations))
	mux.HandleFunc("POST /v2/models/{name}/infer", s.scoring("v2_infer", s.handleV2Infer))
	mux.HandleFunc("GET /swagger.json", s.plain("swagger", func(w http.ResponseWriter, r *http.Request) {
		writeRaw(w, http.StatusOK, s.swagger)
	}))
	mux.HandleFunc("GET /healthz", s.plain("healthz", s.handleReady))
	mux.HandleFunc("GET /ping", s.plain("ping", s.handleReady))
	mux.HandleFunc("GET /v2/health/live", s.plain("v2_live", func(w http.ResponseWriter, r *http.Request) {
		writeRaw(w, http.StatusOK, []byte(`{"live":true}`))
	}))
	mux.HandleFunc("GET /v2/health/ready", s.plain("v2_ready", s.handleReady))
	mux.HandleFunc("GET /v2", s.plain("v2_server", s.handleV2Server))
	mux.HandleFunc("GET /v2/models/{name}", s.plain("v2_model", s.handleV2Model))
	mux.HandleFunc("GET /v2/models/{name}/ready", s.plain("v2_model_ready", func(w http.ResponseWriter, r *http.Request) {
		if !s.knownModel(r.PathValue("name")) {
			writeV2Error(w, http.StatusNotFound, fmt.Sprintf("model %q not found", r.PathValue("name")))
			return
		}
		s.handleReady(w, r)
	}))
	mux.HandleFunc("GET /v1/profile", s.plain("profile", s.handleProfile))
	mux.HandleFunc("GET /metrics", s.handleMetrics)
	s.mux = mux
}

// plain wraps a cheap handler with request metrics.
func (s *Server) plain(endpoint string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		h(rec, r)
		s.met.request(endpoint, cmp0(rec.code), time.Since(start))
	}
}

func cmp0(code int) int {
	if code == 0 {
		return http.StatusOK
	}
	return code
}

func (s *Server) ready() bool { return !s.shutdown.Load() && s.be.ready() }

func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	if !s.ready() {
		w.Header().Set("Retry-After", "1")
		writeRaw(w, http.StatusServiceUnavailable, []byte(`{"ready":false}`))
		return
	}
	writeRaw(w, http.StatusOK, []byte(`{"ready":true}`))
}

func (s *Server) knownModel(name string) bool {
	return name == s.man.Name || len(s.man.Models) > 0 && name == s.man.Models[0].Name
}

// protocol writes the errors and results of one endpoint.
type protocol struct {
	v2 bool
}

// scoringHandler parses a body into rows (or fails), and on success writes
// the result.
type scoringHandler func(r *http.Request, body []byte) (rows []map[string]any, write func(http.ResponseWriter, *result), proto protocol, err error)

// scoring wraps a scoring endpoint: content type, admission to the worker
// queue, body limit, row limit, validation, inference, profiling, metrics.
func (s *Server) scoring(endpoint string, h scoringHandler) http.HandlerFunc {
	proto := protocol{v2: endpoint == "v2_infer"}
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		defer func() { s.met.request(endpoint, cmp0(rec.code), time.Since(start)) }()
		fail := func(code int, reason string, err error) {
			s.met.error(reason)
			s.writeError(rec, proto, code, err)
		}
		if ct := r.Header.Get("Content-Type"); ct != "" {
			if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" && mt != "text/json" && !strings.HasSuffix(mt, "+json") {
				fail(http.StatusUnsupportedMediaType, "content_type", errclass.Invalid("Content-Type", "Content-Type %q is not supported, want application/json", ct))
				return
			}
		}
		if err := s.q.acquire(r.Context()); err != nil {
			rec.Header().Set("Retry-After", "1")
			if errors.Is(err, errQueueFull) {
				fail(http.StatusTooManyRequests, "queue_full", errclass.New(errclass.Unavailable, "", "too many requests: %d scoring and %d waiting", s.cfg.Workers, s.cfg.QueueSize))
			} else {
				fail(http.StatusServiceUnavailable, "canceled", err)
			}
			return
		}
		defer s.q.release()
		s.met.inflight.Add(1)
		defer s.met.inflight.Add(-1)
		body, err := io.ReadAll(http.MaxBytesReader(rec, r.Body, s.cfg.MaxBodyBytes))
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				fail(http.StatusRequestEntityTooLarge, "too_large", errclass.New(errclass.TooLarge, "", "request body is larger than the limit of %d bytes", s.cfg.MaxBodyBytes))
			} else {
				fail(http.StatusBadRequest, "read", errclass.Wrap(errclass.InvalidArgument, err, "read request body"))
			}
			return
		}
		rows, write, _, err := h(r, body)
		if err != nil {
			code := statusOf(err)
			reason := "bad_request"
			if code == http.StatusNotFound {
				reason = "not_found"
			}
			fail(code, reason, err)
			return
		}
		if len(rows) == 0 {
			fail(http.StatusBadRequest, "bad_request", errclass.Invalid("", "the request has no rows"))
			return
		}
		if len(rows) > s.cfg.MaxRows {
			fail(http.StatusBadRequest, "too_many_rows", errclass.Invalid("", "%d rows, more than the limit of %d per request", len(rows), s.cfg.MaxRows))
			return
		}
		b, err := s.val.validate(rows)
		if err != nil {
			var re *RowError
			if errors.As(err, &re) {
				s.prof.observeRejected(re)
			}
			fail(http.StatusBadRequest, "invalid_row", err)
			return
		}
		if !s.be.ready() {
			rec.Header().Set("Retry-After", "1")
			fail(http.StatusServiceUnavailable, "unavailable", errclass.New(errclass.Unavailable, "", "the model is not ready"))
			return
		}
		if s.cfg.beforeInfer != nil {
			s.cfg.beforeInfer()
		}
		t0 := time.Now()
		res, err := s.be.infer(r.Context(), b)
		s.met.inference(time.Since(t0))
		if err != nil {
			switch {
			case errors.Is(err, ErrTimeout):
				fail(http.StatusGatewayTimeout, "timeout", err)
			case errclass.Is(err, errclass.Unavailable):
				rec.Header().Set("Retry-After", "1")
				fail(http.StatusServiceUnavailable, "unavailable", err)
			default:
				code := statusOf(err)
				fail(code, "inference", err)
			}
			return
		}
		if !s.cfg.noProfile {
			s.prof.observe(b, res)
		}
		write(rec, res)
	}
}

// statusOf maps an error's class to an HTTP status.
func statusOf(err error) int {
	switch errclass.ClassOf(err) {
	case errclass.InvalidArgument:
		return http.StatusBadRequest
	case errclass.NotFound:
		return http.StatusNotFound
	case errclass.TooLarge:
		return http.StatusRequestEntityTooLarge
	case errclass.Unavailable:
		return http.StatusServiceUnavailable
	case errclass.FailedPrecondition, errclass.Conflict:
		return http.StatusConflict
	}
	if errors.Is(err, context.Canceled) {
		return 499
	}
	return http.StatusInternalServerError
}

// writeError writes {"error": {"message", "row", "field"}}, or for the
// Open Inference Protocol {"error": "message"}.
func (s *Server) writeError(w http.ResponseWriter, p protocol, code int, err error) {
	if code >= 500 {
		s.cfg.Logger.Warn("scoring failed", "status", code, "err", err)
	}
	if p.v2 {
		writeV2Error(w, code, err.Error())
		return
	}
	e := struct {
		Message string `json:"message"`
		Row     *int   `json:"row,omitempty"`
		Field   string `json:"field,omitempty"`
	}{Message: err.Error(), Field: errclass.FieldOf(err)}
	var re *RowError
	if errors.As(err, &re) {
		e.Row = &re.Row
		e.Field = re.Field
	}
	b, _ := json.Marshal(map[string]any{"error": e})
	writeRaw(w, code, b)
}

func writeV2Error(w http.ResponseWriter, code int, msg string) {
	b, _ := json.Marshal(map[string]string{"error": msg})
	writeRaw(w, code, b)
}

func writeRaw(w http.ResponseWriter, code int, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

// handleScore: POST /score {"input_df": [...]} -> {"result": [...]}.
func (s *Server) handleScore(r *http.Request, body []byte) ([]map[string]any, func(http.ResponseWriter, *result), protocol, error) {
	rows, err := parseScore(body)
	return rows, func(w http.ResponseWriter, res *result) {
		buf := make([]byte, 0, 64+res.n*96)
		buf = append(buf, `{"result":`...)
		buf = appendRows(buf, res)
		buf = append(buf, '}')
		writeRaw(w, http.StatusOK, buf)
	}, protocol{}, err
}

// handleInvocations: POST /invocations (MLflow) -> {"predictions": [...]}.
func (s *Server) handleInvocations(r *http.Request, body []byte) ([]map[string]any, func(http.ResponseWriter, *result), protocol, error) {
	rows, err := parseInvocations(body, s.man.Schema)
	return rows, func(w http.ResponseWriter, res *result) {
		buf := make([]byte, 0, 64+res.n*96)
		buf = append(buf, `{"predictions":`...)
		buf = appendRows(buf, res)
		buf = append(buf, '}')
		writeRaw(w, http.StatusOK, buf)
	}, protocol{}, err
}

// handleV2Infer: POST /v2/models/{name}/infer (Open Inference Protocol).
func (s *Server) handleV2Infer(r *http.Request, body []byte) ([]map[string]any, func(http.ResponseWriter, *result), protocol, error) {
	p := protocol{v2: true}
	name := r.PathValue("name")
	if !s.knownModel(name) {
		return nil, nil, p, errclass.NotFoundf("model %q not found", name)
	}
	maxElems := int(s.cfg.MaxBodyBytes)
	id, rows, err := parseV2(body, s.man.Schema, s.concat, maxElems)
	return rows, func(w http.ResponseWriter, res *result) {
		buf := make([]byte, 0, 128+res.n*96)
		buf = append(buf, `{"model_name":`...)
		buf = appendString(buf, s.man.Name)
		buf = append(buf, `,"model_version":"`...)
		buf = strconv.AppendInt(buf, int64(s.man.Models[0].Version), 10)
		buf = append(buf, '"')
		if id != "" {
			buf = append(buf, `,"id":`...)
			buf = appendString(buf, id)
		}
		buf = append(buf, `,"outputs":`...)
		buf = appendV2Outputs(buf, res)
		buf = append(buf, '}')
		writeRaw(w, http.StatusOK, buf)
	}, p, err
}

func (s *Server) handleV2Server(w http.ResponseWriter, r *http.Request) {
	b, _ := json.Marshal(map[string]any{"name": "mlfleet-scorer", "version": Version, "extensions": []string{}})
	writeRaw(w, http.StatusOK, b)
}

type v2Meta struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
}

func (s *Server) handleV2Model(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !s.knownModel(name) {
		writeV2Error(w, http.StatusNotFound, fmt.Sprintf("model %q not found", name))
		return
	}
	meta := func(fs []manifest.Field) []v2Meta {
		out := make([]v2Meta, 0, len(fs))
		for _, f := range fs {
			shape := []int64{-1}
			for _, d := range f.Shape {
				shape = append(shape, int64(d))
			}
			out = append(out, v2Meta{Name: f.Name, Datatype: v2DataType(dtypeOf(f.Type)), Shape: shape})
		}
		return out
	}
	doc := map[string]any{
		"name":     s.man.Name,
		"versions": []string{strconv.Itoa(s.man.Models[0].Version)},
		"platform": s.be.platform(),
		"inputs":   meta(s.man.Schema.Inputs),
		"outputs":  meta(s.man.Schema.Outputs),
	}
	b, _ := json.Marshal(doc)
	writeRaw(w, http.StatusOK, b)
}

// handleProfile: GET /v1/profile -> {"current": window, "last": window|null}.
func (s *Server) handleProfile(w http.ResponseWriter, r *http.Request) {
	cur, last := s.prof.snapshot()
	b, err := json.Marshal(struct {
		Current *profile.Window `json:"current"`
		Last    *profile.Window `json:"last"`
	}{cur, last})
	if err != nil {
		writeRaw(w, http.StatusInternalServerError, []byte(`{"error":{"message":"profile cannot be encoded"}}`))
		return
	}
	writeRaw(w, http.StatusOK, b)
}

func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	var buf bytes.Buffer
	s.met.write(&buf, s.q.waiting.Load(), int64(s.cfg.Workers), s.q.capacity)
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	_, _ = w.Write(buf.Bytes())
}
