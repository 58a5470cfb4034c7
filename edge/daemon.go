package edge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mlfleet/mlfleet/edge/gateway"
	"github.com/mlfleet/mlfleet/edge/internal/boltstore"
	"github.com/mlfleet/mlfleet/edge/internal/mqttsync"
	"github.com/mlfleet/mlfleet/shared/errclass"
	"github.com/mlfleet/mlfleet/shared/twin"
)

// Agent is the daemon version reported to the cloud.
const Agent = "mlfleet-edge/0.1"

// Config configures the daemon.
type Config struct {
	// DataDir holds the state file (state.db) and instance logs.
	DataDir string
	// GatewayAddr is the scoring gateway's listen address (default
	// 127.0.0.1:8580; port 0 picks one, see Daemon.GatewayAddr).
	GatewayAddr string
	// GatewayKey, when set, is required as a Bearer key on the gateway.
	GatewayKey string
	// GatewayProxyOnly keeps the gateway in the data path: it proxies every
	// request instead of handing keep-alive connections to the scorers.
	GatewayProxyOnly bool
	// ContainerdAddress and ContainerdNamespace locate containerd (used by
	// the wiring in edge/daemon; defaults /run/containerd/containerd.sock
	// and "mlfleet").
	ContainerdAddress   string
	ContainerdNamespace string
	// TelemetryWindow is how often service metrics and profiles are
	// collected (default 60 s).
	TelemetryWindow time.Duration
	// ReconcileInterval is how often the daemon reconciles without being
	// asked (retries, crashed instances; default 15 s).
	ReconcileInterval time.Duration
	// HealthInterval is how often running services are probed (default 5 s).
	HealthInterval time.Duration
	// MQTTMinBackoff and MQTTMaxBackoff bound reconnect waits.
	MQTTMinBackoff, MQTTMaxBackoff time.Duration
	Logger                         *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

func (c *Config) defaults() {
	if c.GatewayAddr == "" {
		c.GatewayAddr = "127.0.0.1:8580"
	}
	if c.ContainerdAddress == "" {
		c.ContainerdAddress = "/run/containerd/containerd.sock"
	}
	if c.ContainerdNamespace == "" {
		c.ContainerdNamespace = "mlfleet"
	}
	if c.TelemetryWindow <= 0 {
		c.TelemetryWindow = time.Minute
	}
	if c.ReconcileInterval <= 0 {
		c.ReconcileInterval = 15 * time.Second
	}
	if c.HealthInterval <= 0 {
		c.HealthInterval = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// WithDefaults returns cfg with its zero fields set to their defaults.
func WithDefaults(cfg Config) Config {
	cfg.defaults()
	return cfg
}

// StatePath is the state file in a data dir.
func StatePath(dataDir string) string { return filepath.Join(dataDir, "state.db") }

// Deps are the daemon's adapters. The daemon owns them after New: Close
// closes them.
type Deps struct {
	Runtime Runtime
	Store   *boltstore.Store
}

// Daemon is the device daemon. New builds it, Run runs it.
type Daemon struct {
	cfg      Config
	log      *slog.Logger
	rt       Runtime
	store    *boltstore.Store
	gw       *gateway.Gateway
	exec     *Executor
	sync     *mqttsync.Client // nil when not enrolled
	deviceID string
	health   *healthMonitor

	kick      chan struct{}
	addrReady chan struct{}
	addr      net.Addr

	closeOnce sync.Once
	closeErr  error
}

// Open opens the state file in cfg.DataDir and builds a daemon over rt.
func Open(cfg Config, rt Runtime) (*Daemon, error) {
	if cfg.DataDir == "" {
		return nil, errclass.Invalid("dataDir", "data dir is empty")
	}
	store, err := boltstore.Open(StatePath(cfg.DataDir), boltstore.Options{})
	if err != nil {
		return nil, err
	}
	d, err := New(cfg, Deps{Runtime: rt, Store: store})
	if err != nil {
		_ = store.Close()
		return nil, err
	}
	return d, nil
}

// New builds a daemon; it starts nothing. A device that is not enrolled
// runs offline: it serves and keeps alive what its state holds.
func New(cfg Config, deps Deps) (*Daemon, error) {
	cfg.defaults()
	switch {
	case cfg.DataDir == "":
		return nil, errclass.Invalid("dataDir", "data dir is empty")
	case deps.Runtime == nil:
		return nil, errclass.Invalid("runtime", "no container runtime")
	case deps.Store == nil:
		return nil, errclass.Invalid("store", "no state store")
	}
	d := &Daemon{
		cfg: cfg, log: cfg.Logger, rt: deps.Runtime, store: deps.Store,
		gw:     gateway.New(gateway.Config{Key: cfg.GatewayKey, Logger: cfg.Logger.With("part", "gateway")}),
		health: newHealthMonitor(), kick: make(chan struct{}, 1), addrReady: make(chan struct{}),
	}
	d.exec = &Executor{
		Runtime: deps.Runtime, Store: deps.Store, Router: d.gw, LogDir: filepath.Join(cfg.DataDir, "logs"),
		Now: cfg.Now, OnChange: d.report, Log: cfg.Logger.With("part", "executor"),
	}
	if !cfg.GatewayProxyOnly {
		d.exec.HandoffDir = filepath.Join(cfg.DataDir, "handoff")
	}
	enr, err := deps.Store.Enrollment()
	switch {
	case errclass.Is(err, errclass.NotFound):
		d.log.Warn("device is not enrolled: running offline from local state")
	case err != nil:
		return nil, err
	default:
		d.deviceID = enr.DeviceID
		d.sync, err = mqttsync.New(mqttsync.Config{
			Broker: enr.MQTT.URL, DeviceID: enr.DeviceID, Username: enr.MQTT.Username, Password: enr.MQTT.Password,
			Store: deps.Store, OnDesired: func(twin.Desired) { d.Kick() },
			MinBackoff: cfg.MQTTMinBackoff, MaxBackoff: cfg.MQTTMaxBackoff, Now: cfg.Now, Logger: cfg.Logger.With("part", "mqtt"),
		})
		if err != nil {
			return nil, fmt.Errorf("mqtt sync from enrollment: %w", err)
		}
	}
	return d, nil
}

// DeviceID is the enrolled device id ("" when not enrolled).
func (d *Daemon) DeviceID() string { return d.deviceID }

// Kick asks for a reconcile soon.
func (d *Daemon) Kick() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// GatewayAddr waits until Run listens (or ctx ends) and returns the
// gateway's address.
func (d *Daemon) GatewayAddr(ctx context.Context) (net.Addr, error) {
	select {
	case <-d.addrReady:
		return d.addr, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// SyncCounters returns the MQTT sync's counters (zero when not enrolled).
func (d *Daemon) SyncCounters() mqttsync.Counters {
	if d.sync == nil {
		return mqttsync.Counters{}
	}
	return d.sync.Counters()
}

// Routes returns the gateway's current routes (service -> backend URL).
func (d *Daemon) Routes() map[string]string { return d.gw.Routes() }

// Run runs the daemon until ctx ends: the gateway, the MQTT sync, the
// reconcile loop, health probes and telemetry collection. It owns every
// goroutine it starts and returns when they have all ended.
func (d *Daemon) Run(ctx context.Context) error {
	if err := os.MkdirAll(d.exec.LogDir, 0o700); err != nil {
		return fmt.Errorf("log dir: %w", err)
	}
	// Serve what the state says from the first request: after a daemon
	// restart the instances are still running and traffic must not wait
	// for containerd or the cloud.
	if err := d.exec.SyncRoutes(); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", d.cfg.GatewayAddr)
	if err != nil {
		return errclass.Wrap(errclass.Unavailable, err, "gateway listen on %s", d.cfg.GatewayAddr)
	}
	d.addr = ln.Addr()
	close(d.addrReady)
	d.log.Info("gateway listening", "addr", d.addr.String(), "device", d.deviceID)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 5)
	start := func(name string, f func(context.Context) error) {
		wg.Go(func() {
			if err := f(ctx); err != nil && ctx.Err() == nil {
				errs <- fmt.Errorf("%s: %w", name, err)
				cancel()
			}
		})
	}
	start("gateway", func(ctx context.Context) error { return d.gw.Serve(ctx, ln) })
	if d.sync != nil {
		start("mqtt", d.sync.Run)
	}
	start("reconcile", d.reconcileLoop)
	start("health", d.healthLoop)
	start("telemetry", d.telemetryLoop)
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

// Close releases the runtime and the store. It is idempotent.
func (d *Daemon) Close() error {
	d.closeOnce.Do(func() {
		d.gw.CloseIdleConnections()
		d.closeErr = errors.Join(d.rt.Close(), d.store.Close())
	})
	return d.closeErr
}

func (d *Daemon) reconcileLoop(ctx context.Context) error {
	t := time.NewTicker(d.cfg.ReconcileInterval)
	defer t.Stop()
	for {
		d.reconcile(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-d.kick:
		case <-t.C:
		}
	}
}

// reconcile plans and executes once.
func (d *Daemon) reconcile(ctx context.Context) {
	desired, err := d.store.Desired()
	if err != nil {
		d.log.Error("read desired", "err", err)
		return
	}
	states, err := d.store.Services()
	if err != nil {
		d.log.Error("read services", "err", err)
		return
	}
	insts, err := d.rt.List(ctx)
	if err != nil {
		d.log.Error("list instances", "err", err)
		return
	}
	actions := Plan(desired, Observed{Now: d.cfg.Now(), Services: states, Instances: insts, Unhealthy: d.health.unhealthy()})
	if len(actions) > 0 {
		if err := d.exec.Execute(ctx, actions); err != nil {
			d.log.Warn("reconcile", "version", desired.Version, "err", err)
		}
	}
	if err := d.exec.SyncRoutes(); err != nil {
		d.log.Error("routes", "err", err)
	}
	d.report()
	if len(actions) > 0 {
		releaseMemory()
	}
}

// releaseMemory gives the memory of a burst of work back to the OS. A pull
// leaves megabytes of copy buffers in sync.Pools (containerd's content
// copier, gRPC's send buffers) that only a second collection empties, and
// an idle daemon's heap does not grow enough to trigger one.
func releaseMemory() {
	runtime.GC()         // the pools move to their victim caches
	debug.FreeOSMemory() // collects those and returns the free pages
}

// report writes the Reported document from the state and tells the sync.
func (d *Daemon) report() {
	if d.deviceID == "" {
		return
	}
	states, err := d.store.Services()
	if err != nil {
		d.log.Error("read services", "err", err)
		return
	}
	version, err := d.store.DesiredVersion()
	if err != nil {
		d.log.Error("read desired version", "err", err)
		return
	}
	r := BuildReported(d.deviceID, version, d.cfg.Now(), states, d.health.failing())
	old, _ := d.store.Reported()
	if sameReport(old, r) {
		return
	}
	if err := d.store.PutReported(r); err != nil {
		d.log.Error("store reported", "err", err)
		return
	}
	if d.sync != nil {
		d.sync.NotifyReported()
	}
}

func sameReport(a, b twin.Reported) bool {
	a.Time, b.Time = time.Time{}, time.Time{}
	x, err1 := twin.Encode(a)
	y, err2 := twin.Encode(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}

// BuildReported makes the Reported document from service states.
// An instance is healthy when it serves and its last probe passed.
func BuildReported(device string, version uint64, now time.Time, states map[string]boltstore.ServiceState, failing map[string]bool) twin.Reported {
	r := twin.Reported{Protocol: twin.Protocol, Device: device, ObservedVersion: version, Time: now.UTC(), Agent: Agent, Services: []twin.ServiceStatus{}}
	for _, st := range states {
		s := twin.ServiceStatus{Name: st.Name, Phase: st.Phase, Image: st.Image, Reason: truncate(st.Reason, 2048), Since: st.Since.UTC(), Wanted: st.Wanted}
		if s.Phase == "" {
			s.Phase = twin.Pulling
		}
		s.Healthy = st.Instance != "" && (st.Phase == twin.Running || st.Phase == twin.RolledBack) && !failing[st.Instance]
		r.Services = append(r.Services, s)
	}
	slices.SortFunc(r.Services, func(a, b twin.ServiceStatus) int { return strings.Compare(a.Name, b.Name) })
	return r
}
