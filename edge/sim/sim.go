// Package sim simulates a fleet of mlfleet-edge devices in one process, for
// load and rollout tests of the cloud. Every simulated device speaks the real
// device sync protocol (shared/twin) over its own MQTT connection, with its
// own credentials, so the broker's authentication and per-device ACL are
// exercised as by real devices. Only the container runtime is simulated:
// pulls and starts take configurable (jittered) times and fail, crash or
// succeed at configurable rates, and some images can be made to always fail.
//
// The protocol is the real device's (see edge/internal/mqttsync): a device
// connects with client id = user name = its id, password = its credential,
// a persistent session and a retained last will saying it is offline. On
// every (re)connect it subscribes to its desired topic first, then publishes
// Presence online (retained), a DesiredRequest with the version it holds,
// and its Reported state (retained). A desired document is decoded strictly;
// one whose version is not newer than the held one is ignored.
//
// On a newer desired document each changed service goes Pulling -> Starting
// -> Running (healthy), or, when its update fails, RolledBack (still serving
// the old image, with a reason) or Failed (nothing to fall back to); a
// crashing version reaches Running and is rolled back after about StartTime.
// Every state change is published as a full Reported document carrying the
// ObservedVersion. Services no longer desired are dropped.
//
// With a TelemetryInterval, every device also sends telemetry batches as the
// daemon does: per serving service, the scorer's request counters (by HTTP
// code) and latency histogram, flattened as the daemon flattens /metrics,
// with an error rate and latency set per image (Traffic); batches are
// numbered from 1 and the cloud's acknowledgements counted. Telemetry is off
// by default, so a large fleet costs nothing for it.
//
// Scale: all simulated delays run from one scheduler (a heap and one
// goroutine), connections are opened at a bounded rate, and paho clients use
// in-memory stores; per device there are only paho's own goroutines.
package sim

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/mlfleet/mlfleet/shared/errclass"
	"github.com/mlfleet/mlfleet/shared/twin"
)

// Identity is an enrolled device's id and credential.
type Identity struct {
	ID         string `json:"deviceId"`
	Credential string `json:"credential"`
	// MQTTURL is the broker URL the cloud gave at enrollment (informational:
	// the fleet connects to Config.MQTTURL).
	MQTTURL string `json:"mqttUrl,omitempty"`
}

// Config configures a simulated fleet. Zero values take the defaults named.
type Config struct {
	// MQTTURL is the broker: tcp://, mqtt://, ssl://, tls:// or mqtts://.
	MQTTURL string
	Devices []Identity
	// PullTime and StartTime are how long a simulated pull and start take,
	// each moved uniformly by up to +-its jitter.
	PullTime, PullJitter   time.Duration
	StartTime, StartJitter time.Duration
	// FailRate is the probability that an update fails (half of them at the
	// pull, half at the start): the service reports RolledBack to its old
	// image, or Failed if it had none, with a reason.
	FailRate float64
	// CrashRate is the probability that an update that started crashes
	// about StartTime after reaching Running, and is rolled back.
	CrashRate float64
	// FailImages maps image references that always fail to start to the
	// reason reported (e.g. to make one version of a rollout bad).
	FailImages map[string]string
	// TelemetryInterval, when positive, makes each device send a telemetry
	// batch that often (jittered by up to a tenth; at least 10 ms). Off by
	// default.
	TelemetryInterval time.Duration
	// Requests is how many scoring requests each serving service answers
	// per telemetry interval (default 100).
	Requests int
	// Traffic sets how an image serves, by image reference: its error rate
	// and latency (others serve as DefaultTraffic does).
	Traffic map[string]Traffic
	// ConnectRate bounds new connections per second, so a fleet does not
	// storm the broker (default 200; it also paces reconnects).
	ConnectRate float64
	// MaxConnecting bounds connections being set up at once (default 64).
	MaxConnecting int
	// KeepAlive is the MQTT keep-alive (default 60 s).
	KeepAlive time.Duration
	// OpTimeout bounds each connect, subscribe and publish (default 10 s).
	OpTimeout time.Duration
	// Seed makes the fleet's random draws reproducible.
	Seed int64
	// Clock times the simulated runtime (default RealClock).
	Clock  Clock
	Logger *slog.Logger
}

// Fleet is a running set of simulated devices. Make one with New, then
// call Run.
type Fleet struct {
	cfg  Config
	log  *slog.Logger
	rt   *engine
	devs []*device
	byID map[string]*device
	url  *url.URL

	ctx     context.Context // of Run; nil before
	queueMu sync.Mutex
	queue   []*device
	queued  chan struct{}
	slots   chan struct{}
	running atomic.Bool

	connectErrors, malformed atomic.Uint64
}

// New checks cfg and prepares the devices and their MQTT clients; it starts
// nothing.
func New(cfg Config) (*Fleet, error) {
	u, err := url.Parse(cfg.MQTTURL)
	switch {
	case cfg.MQTTURL == "" || err != nil || u.Host == "":
		return nil, errclass.Invalid("mqttUrl", "broker URL %q is not a URL with a host", cfg.MQTTURL)
	case u.Scheme != "tcp" && u.Scheme != "mqtt" && u.Scheme != "ssl" && u.Scheme != "tls" && u.Scheme != "mqtts":
		return nil, errclass.Invalid("mqttUrl", "broker URL %q: scheme must be tcp, mqtt, ssl, tls or mqtts", cfg.MQTTURL)
	case len(cfg.Devices) == 0:
		return nil, errclass.Invalid("devices", "no devices")
	case cfg.FailRate < 0 || cfg.FailRate > 1 || cfg.FailRate != cfg.FailRate:
		return nil, errclass.Invalid("failRate", "fail rate %g is not within [0, 1]", cfg.FailRate)
	case cfg.CrashRate < 0 || cfg.CrashRate > 1 || cfg.CrashRate != cfg.CrashRate:
		return nil, errclass.Invalid("crashRate", "crash rate %g is not within [0, 1]", cfg.CrashRate)
	case cfg.PullTime < 0 || cfg.PullJitter < 0:
		return nil, errclass.Invalid("pullTime", "pull time %s +- %s must not be negative", cfg.PullTime, cfg.PullJitter)
	case cfg.StartTime < 0 || cfg.StartJitter < 0:
		return nil, errclass.Invalid("startTime", "start time %s +- %s must not be negative", cfg.StartTime, cfg.StartJitter)
	case cfg.ConnectRate < 0 || cfg.ConnectRate != cfg.ConnectRate:
		return nil, errclass.Invalid("connectRate", "connect rate %g is negative", cfg.ConnectRate)
	case cfg.MaxConnecting < 0:
		return nil, errclass.Invalid("maxConnecting", "max connecting %d is negative", cfg.MaxConnecting)
	}
	for img, reason := range cfg.FailImages {
		if !twin.ValidImage(img) {
			return nil, errclass.Invalid("failImages", "image %q is not a reference pinned by sha256 digest", img)
		}
		if reason == "" || len(reason) > 2048 {
			return nil, errclass.Invalid("failImages", "reason for image %q must be 1 to 2048 bytes", img)
		}
	}
	if err := checkTraffic(&cfg); err != nil {
		return nil, err
	}
	if cfg.ConnectRate == 0 {
		cfg.ConnectRate = 200
	}
	if cfg.MaxConnecting == 0 {
		cfg.MaxConnecting = 64
	}
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = 60 * time.Second
	}
	if cfg.OpTimeout <= 0 {
		cfg.OpTimeout = 10 * time.Second
	}
	if cfg.Clock == nil {
		cfg.Clock = RealClock
	}
	f := &Fleet{
		cfg: cfg, log: cfg.Logger, url: u, byID: make(map[string]*device, len(cfg.Devices)),
		devs: make([]*device, 0, len(cfg.Devices)), queued: make(chan struct{}, 1),
		slots: make(chan struct{}, cfg.MaxConnecting),
	}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	f.rt = &engine{cfg: &f.cfg, report: f.publishReported}
	f.rt.sched = newScheduler(cfg.Clock, f.fire)
	for i, id := range cfg.Devices {
		switch {
		case !twin.ValidDeviceID(id.ID):
			return nil, errclass.Invalid(fmt.Sprintf("devices[%d].id", i), "device id %q is not valid", id.ID)
		case id.Credential == "":
			return nil, errclass.Invalid(fmt.Sprintf("devices[%d].credential", i), "device %q has no credential", id.ID)
		case f.byID[id.ID] != nil:
			return nil, errclass.Invalid(fmt.Sprintf("devices[%d].id", i), "device id %q appears twice", id.ID)
		}
		d := &device{id: id.ID, cred: id.Credential, index: i, want: true, rng: uint64(cfg.Seed)*0x9e3779b97f4a7c15 + uint64(i)}
		if err := f.newClient(d); err != nil {
			return nil, err
		}
		f.devs = append(f.devs, d)
		f.byID[d.id] = d
	}
	return f, nil
}

// newClient makes d's paho client (no connection yet).
func (f *Fleet) newClient(d *device) error {
	will, err := twin.Encode(twin.Presence{Protocol: twin.Protocol, Device: d.id, Online: false, Time: f.cfg.Clock.Now().UTC()})
	if err != nil {
		return fmt.Errorf("encode will of %s: %w", d.id, err)
	}
	opts := mqtt.NewClientOptions().
		AddBroker(f.cfg.MQTTURL).
		SetClientID(d.id).
		SetUsername(d.id).
		SetPassword(d.cred).
		SetCleanSession(false).
		SetAutoReconnect(false). // the fleet reconnects, paced and with backoff
		SetConnectRetry(false).
		SetResumeSubs(false).
		SetStore(mqtt.NewMemoryStore()).
		SetOrderMatters(false).
		SetKeepAlive(f.cfg.KeepAlive).
		SetPingTimeout(f.cfg.OpTimeout).
		SetConnectTimeout(f.cfg.OpTimeout).
		SetWriteTimeout(f.cfg.OpTimeout).
		SetBinaryWill(twin.Topic(d.id, twin.KindPresence), will, 1, true).
		SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) { f.onMessage(d, m) }).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) { f.onLost(d, err) }).
		SetCustomOpenConnectionFn(func(u *url.URL, o mqtt.ClientOptions) (net.Conn, error) { return f.dial(d, u, o) })
	d.client = mqtt.NewClient(opts)
	return nil
}

// dial opens d's network connection and keeps it, so that SetOnline(false)
// can cut it the way a lost network does (and the broker sends the will).
func (f *Fleet) dial(d *device, u *url.URL, o mqtt.ClientOptions) (net.Conn, error) {
	dl := &net.Dialer{Timeout: o.ConnectTimeout}
	var conn net.Conn
	var err error
	switch u.Scheme {
	case "ssl", "tls", "mqtts":
		conn, err = (&tls.Dialer{NetDialer: dl, Config: o.TLSConfig}).Dial("tcp", u.Host)
	default:
		conn, err = dl.Dial("tcp", u.Host)
	}
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.conn = conn
	d.mu.Unlock()
	return conn, nil
}

// Run connects every device (at most ConnectRate a second) and keeps the
// fleet going until ctx ends; then each connected device says goodbye
// (Presence offline) and disconnects. It returns nil when ctx ends; Run may
// be called once.
func (f *Fleet) Run(ctx context.Context) error {
	if !f.running.CompareAndSwap(false, true) {
		return errclass.New(errclass.FailedPrecondition, "", "fleet is already running")
	}
	f.queueMu.Lock()
	f.ctx = ctx
	for _, d := range f.devs {
		d.mu.Lock()
		if d.want && d.state == stOffline {
			d.state = stQueued
			f.queue = append(f.queue, d)
		}
		d.mu.Unlock()
	}
	f.queueMu.Unlock()
	f.startTelemetry(f.cfg.Clock.Now())
	var wg sync.WaitGroup
	wg.Go(func() { f.rt.sched.run(ctx) })
	wg.Go(func() { f.connector(ctx) })
	wg.Wait()
	f.shutdown()
	return nil
}

// enqueue queues d for the connector; d.mu must be held and d offline.
func (f *Fleet) enqueue(d *device) {
	d.state = stQueued
	f.queueMu.Lock()
	f.queue = append(f.queue, d)
	f.queueMu.Unlock()
	select {
	case f.queued <- struct{}{}:
	default:
	}
}

// connector opens queued connections, paced at ConnectRate, with at most
// MaxConnecting being set up at once.
func (f *Fleet) connector(ctx context.Context) {
	interval := time.Duration(float64(time.Second) / f.cfg.ConnectRate)
	next := time.Now()
	var sessions sync.WaitGroup
	defer sessions.Wait()
	for {
		f.queueMu.Lock()
		var d *device
		if len(f.queue) > 0 {
			d = f.queue[0]
			f.queue[0] = nil
			f.queue = f.queue[1:]
		}
		f.queueMu.Unlock()
		if d == nil {
			select {
			case <-ctx.Done():
				return
			case <-f.queued:
				continue
			}
		}
		if wait := time.Until(next); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		next = next.Add(interval)
		if floor := time.Now().Add(-time.Second); next.Before(floor) {
			next = floor // after a lull, allow only a short catch-up burst
		}
		select {
		case <-ctx.Done():
			return
		case f.slots <- struct{}{}:
		}
		sessions.Go(func() {
			defer func() { <-f.slots }()
			f.connect(ctx, d)
		})
	}
}

// wait waits for tok, ctx or the op timeout.
func (f *Fleet) wait(ctx context.Context, tok mqtt.Token) error {
	t := time.NewTimer(f.cfg.OpTimeout)
	defer t.Stop()
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return errclass.New(errclass.Unavailable, "", "broker did not answer within %s", f.cfg.OpTimeout)
	}
}

// connect sets up d's session: connect, subscribe first, then Presence
// online, DesiredRequest and Reported.
func (f *Fleet) connect(ctx context.Context, d *device) {
	d.mu.Lock()
	if !d.want || d.state != stQueued {
		if d.state == stQueued {
			d.state = stOffline
		}
		d.mu.Unlock()
		return
	}
	d.state = stConnecting
	d.mu.Unlock()
	err := f.session(ctx, d)
	d.mu.Lock()
	switch {
	case err == nil && d.want && !d.client.IsConnectionOpen():
		err = errclass.New(errclass.Unavailable, "", "connection lost during resync")
	case err == nil && d.want:
		d.state, d.attempts = stOnline, 0
		d.connects.Add(1)
		d.mu.Unlock()
		return
	case err == nil: // SetOnline(false) came while connecting
		f.cut(d)
		d.mu.Unlock()
		return
	}
	f.connectErrors.Add(1)
	d.state = stOffline
	f.retry(d)
	c := d.client
	d.mu.Unlock()
	if ctx.Err() == nil {
		f.log.Warn("simulated device could not connect", "device", d.id, "broker", f.cfg.MQTTURL, "err", err)
	}
	// Whatever state paho is in (even still connecting after our timeout),
	// make it disconnected before the next attempt; outside d.mu, as paho
	// may wait for a handler that needs it.
	c.Disconnect(0)
}

func (f *Fleet) session(ctx context.Context, d *device) error {
	if err := f.wait(ctx, d.client.Connect()); err != nil {
		return fmt.Errorf("connect to %s as %s: %w", f.cfg.MQTTURL, d.id, err)
	}
	if err := f.wait(ctx, d.client.Subscribe(twin.Topic(d.id, twin.KindDesired), 1, func(_ mqtt.Client, m mqtt.Message) { f.onMessage(d, m) })); err != nil {
		return fmt.Errorf("subscribe %s: %w", twin.Topic(d.id, twin.KindDesired), err)
	}
	if f.cfg.TelemetryInterval > 0 {
		ack := twin.Topic(d.id, twin.KindTelemetryAck)
		if err := f.wait(ctx, d.client.Subscribe(ack, 1, func(_ mqtt.Client, m mqtt.Message) { f.onMessage(d, m) })); err != nil {
			return fmt.Errorf("subscribe %s: %w", ack, err)
		}
	}
	now := f.cfg.Clock.Now()
	presence, err := twin.Encode(twin.Presence{Protocol: twin.Protocol, Device: d.id, Online: true, Time: now.UTC()})
	if err != nil {
		return err
	}
	d.mu.Lock()
	have := d.version
	d.mu.Unlock()
	get, err := twin.Encode(twin.DesiredRequest{Protocol: twin.Protocol, Device: d.id, Have: have})
	if err != nil {
		return err
	}
	toks := []mqtt.Token{
		d.client.Publish(twin.Topic(d.id, twin.KindPresence), 1, true, presence),
		d.client.Publish(twin.Topic(d.id, twin.KindDesiredGet), 1, false, get),
	}
	d.mu.Lock()
	toks = append(toks, f.publishLocked(d, now))
	d.mu.Unlock()
	d.sent.Add(2)
	for _, t := range toks {
		if err := f.wait(ctx, t); err != nil {
			return fmt.Errorf("resync publish: %w", err)
		}
	}
	return nil
}

// retry schedules another connection attempt after a jittered backoff
// (1 s doubling to 60 s); d.mu must be held.
func (f *Fleet) retry(d *device) {
	if !d.want || f.ctx == nil || f.ctx.Err() != nil {
		return
	}
	backoff := time.Second << min(d.attempts, 6)
	backoff = min(backoff, time.Minute)
	d.attempts = min(d.attempts+1, 250)
	wait := backoff/2 + time.Duration(d.rand()*float64(backoff/2))
	f.rt.sched.add(event{at: f.cfg.Clock.Now().Add(wait).UnixNano(), dev: d, kind: evReconnect})
}

// fire runs a due event.
func (f *Fleet) fire(e event, now time.Time) {
	if e.kind == evTelemetry {
		f.sendTelemetry(e.dev, now)
		return
	}
	if e.kind != evReconnect {
		f.rt.step(e, now)
		return
	}
	d := e.dev
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.want && d.state == stOffline && f.ctx != nil && f.ctx.Err() == nil {
		f.enqueue(d)
	}
}

// onLost runs when paho notices d's connection is gone.
func (f *Fleet) onLost(d *device, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.conn = nil
	if d.state != stOnline {
		return // the connecting goroutine handles it
	}
	d.state = stOffline
	if d.want {
		f.log.Info("simulated device lost its connection", "device", d.id, "err", err)
		f.retry(d)
	}
}

// cut drops d's connection abruptly, as a lost network would: the broker
// then publishes d's will (Presence offline). d.mu must be held.
func (f *Fleet) cut(d *device) {
	if d.conn != nil {
		if tc, ok := d.conn.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		_ = d.conn.Close()
		d.conn = nil
	}
	d.state = stOffline
	// paho notices the dead connection itself and tears its session down.
}

// SetOnline takes device id off the network (its connection is cut, so the
// broker publishes its will: Presence offline) or brings it back (it
// reconnects and resyncs). The simulated runtime keeps going while offline.
func (f *Fleet) SetOnline(id string, online bool) error {
	d := f.byID[id]
	if d == nil {
		return errclass.New(errclass.NotFound, "id", "no simulated device %q", id)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.want = online
	switch {
	case !online && (d.state == stOnline || d.state == stConnecting):
		if d.state == stOnline {
			f.cut(d)
		} // a connecting session is cut when it completes
	case !online:
		d.state = stOffline // a queued connect is skipped
	case online && d.state == stOffline && f.running.Load():
		d.attempts = 0
		f.enqueue(d)
	}
	return nil
}

// onMessage handles a message delivered to d.
func (f *Fleet) onMessage(d *device, m mqtt.Message) {
	d.recv.Add(1)
	id, kind, err := twin.ParseTopic(m.Topic())
	if err == nil && id == d.id && kind == twin.KindTelemetryAck && f.cfg.TelemetryInterval > 0 {
		f.handleAck(d, m)
		return
	}
	if err != nil || id != d.id || kind != twin.KindDesired {
		f.malformed.Add(1)
		f.log.Warn("message on an unexpected topic rejected", "device", d.id, "topic", m.Topic())
		return
	}
	f.handleDesired(d, m.Payload())
}

// handleDesired decodes a desired payload strictly for d and applies it.
func (f *Fleet) handleDesired(d *device, payload []byte) {
	var doc twin.Desired
	if err := twin.Decode(payload, twin.MaxDocument, &doc, d.id); err != nil {
		f.malformed.Add(1)
		f.log.Warn("desired document rejected", "device", d.id, "bytes", len(payload), "field", errclass.FieldOf(err), "err", err)
		return
	}
	f.rt.apply(d, doc, f.cfg.Clock.Now())
}

// publishReported publishes d's Reported document; d.mu is held.
func (f *Fleet) publishReported(d *device, now time.Time) { f.publishLocked(d, now) }

func (f *Fleet) publishLocked(d *device, now time.Time) mqtt.Token {
	payload, err := twin.Encode(d.reported(now))
	if err != nil || !d.client.IsConnectionOpen() {
		return doneToken{err: errNotConnected}
	}
	d.sent.Add(1)
	return d.client.Publish(twin.Topic(d.id, twin.KindReported), 1, true, payload)
}

var errNotConnected = errclass.New(errclass.Unavailable, "", "not connected")

// doneToken is a completed token for a publish never attempted.
type doneToken struct{ err error }

func (t doneToken) Wait() bool                     { return true }
func (t doneToken) WaitTimeout(time.Duration) bool { return true }
func (t doneToken) Done() <-chan struct{}          { return closed }
func (t doneToken) Error() error                   { return t.err }

var closed = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// shutdown says goodbye from every connected device, a few at a time.
func (f *Fleet) shutdown() {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for _, d := range f.devs {
		d.mu.Lock()
		online := d.state == stOnline
		d.state = stOffline
		d.mu.Unlock()
		if !online {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			payload, err := twin.Encode(twin.Presence{Protocol: twin.Protocol, Device: d.id, Online: false, Time: f.cfg.Clock.Now().UTC()})
			if err == nil {
				d.client.Publish(twin.Topic(d.id, twin.KindPresence), 1, true, payload).WaitTimeout(2 * time.Second)
				d.sent.Add(1)
			}
			d.client.Disconnect(100)
		})
	}
	wg.Wait()
}

// DeviceStats is one device's traffic.
type DeviceStats struct {
	ID       string `json:"id"`
	Online   bool   `json:"online"`
	Version  uint64 `json:"observedVersion"`
	Sent     uint32 `json:"sent"`     // messages published
	Received uint32 `json:"received"` // messages delivered to it
	Connects uint32 `json:"connects"` // sessions established
}

// Stats is a snapshot of the fleet.
type Stats struct {
	Devices int `json:"devices"`
	Online  int `json:"online"`
	// Phases counts services by phase, over all devices.
	Phases map[twin.Phase]int `json:"phases"`
	// Connects counts sessions established; ConnectErrors failed attempts.
	Connects      uint64 `json:"connects"`
	ConnectErrors uint64 `json:"connectErrors"`
	Sent          uint64 `json:"sent"`
	Received      uint64 `json:"received"`
	// Stale counts desired documents ignored for an old version; Malformed
	// those refused by the decoder or on a wrong topic.
	Stale     uint64 `json:"stale"`
	Malformed uint64 `json:"malformed"`
	// Pending is the number of simulated delays not yet over.
	Pending int `json:"pending"`
	// Telemetry batches sent, acknowledged by the cloud (the highest
	// acknowledged Seq, summed over devices) and dropped while offline.
	TelemetrySent    uint64        `json:"telemetrySent"`
	TelemetryAcked   uint64        `json:"telemetryAcked"`
	TelemetryDropped uint64        `json:"telemetryDropped"`
	PerDevice        []DeviceStats `json:"perDevice"`
}

// Stats returns a snapshot: counts per phase, per-device traffic, connects.
func (f *Fleet) Stats() Stats {
	s := Stats{Devices: len(f.devs), Phases: map[twin.Phase]int{}, PerDevice: make([]DeviceStats, 0, len(f.devs))}
	for _, d := range f.devs {
		d.mu.Lock()
		ds := DeviceStats{ID: d.id, Online: d.state == stOnline, Version: d.version, Sent: d.sent.Load(), Received: d.recv.Load(), Connects: d.connects.Load()}
		for _, sv := range d.services {
			s.Phases[sv.phase]++
		}
		s.TelemetrySent += d.telSent
		s.TelemetryAcked += d.telAcked
		s.TelemetryDropped += d.telDropped
		d.mu.Unlock()
		if ds.Online {
			s.Online++
		}
		s.Connects += uint64(ds.Connects)
		s.Sent += uint64(ds.Sent)
		s.Received += uint64(ds.Received)
		s.PerDevice = append(s.PerDevice, ds)
	}
	s.ConnectErrors = f.connectErrors.Load()
	s.Stale = f.rt.stale.Load()
	s.Malformed = f.malformed.Load()
	s.Pending = f.rt.sched.pending()
	return s
}

// PhaseLine formats per-phase counts in a fixed order, for progress lines.
func (s Stats) PhaseLine() string {
	keys := make([]string, 0, len(s.Phases))
	for p := range s.Phases {
		keys = append(keys, string(p))
	}
	sort.Strings(keys)
	out := ""
	for _, k := range keys {
		if out != "" {
			out += " "
		}
		out += fmt.Sprintf("%s=%d", k, s.Phases[twin.Phase(k)])
	}
	if out == "" {
		out = "no services"
	}
	return out
}
