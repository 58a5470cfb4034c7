// Package mqttsync keeps an mlfleet-edge device in sync with the cloud over
// MQTT (protocol: shared/twin), on the paho client.
//
// The device connects as its id (username = device id, password = its
// credential) with a persistent session (CleanSession=false, client id =
// device id) and a retained last will saying it is offline. On every
// (re)connect it subscribes to its desired and telemetry/ack topics FIRST,
// then publishes Presence online (retained), a DesiredRequest with the
// version it holds, and its current Reported document, and resumes draining
// the telemetry outbox.
//
// An incoming desired document is decoded strictly for this device, ignored
// when its version is not newer than the persisted one (stale, duplicate or
// replayed), persisted in the store BEFORE anything acts on it, and only
// then handed to the OnDesired callback. Malformed and oversized payloads
// are rejected and counted, never applied.
//
// Reconnects back off exponentially with jitter, so a fleet reconnecting at
// once after a broker restart does not storm it.
package mqttsync

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/mlfleet/mlfleet/edge/internal/boltstore"
	"github.com/mlfleet/mlfleet/shared/errclass"
	"github.com/mlfleet/mlfleet/shared/twin"
)

// Config configures a Client.
type Config struct {
	// Broker is the broker URL, e.g. tcp://cloud:1883.
	Broker   string
	DeviceID string
	Username string // default DeviceID
	Password string
	Store    *boltstore.Store
	// OnDesired is called (from the client's receive goroutine) with each
	// accepted desired document, after it is persisted. It must not block.
	OnDesired func(twin.Desired)
	// MinBackoff and MaxBackoff bound the reconnect wait (default 500 ms and
	// 60 s); each wait is jittered between half and all of its bound.
	MinBackoff, MaxBackoff time.Duration
	// KeepAlive is the MQTT keep-alive (default 30 s).
	KeepAlive time.Duration
	// MaxInflight bounds telemetry batches sent but not acknowledged
	// (default 8).
	MaxInflight int
	// OpTimeout bounds each connect, subscribe and publish (default 10 s).
	OpTimeout time.Duration
	Now       func() time.Time
	Logger    *slog.Logger
}

// Counters are the client's running totals.
type Counters struct {
	Connects      uint64 // sessions established
	Accepted      uint64 // desired documents accepted and persisted
	Stale         uint64 // desired documents ignored: version not newer
	Malformed     uint64 // payloads that failed to decode or validate
	Oversized     uint64 // payloads larger than the protocol allows
	Acks          uint64 // telemetry acks applied
	TelemetrySent uint64 // telemetry batches published (with retries)
}

// Client is a device's MQTT sync. Make one with New, then call Run.
type Client struct {
	cfg    Config
	log    *slog.Logger
	client mqtt.Client

	connects, accepted, stale, malformed, oversized, acks, sent atomic.Uint64

	reportedCh  chan struct{}
	telemetryCh chan struct{}

	mu        sync.Mutex
	lost      chan error // of the current session
	connected atomic.Bool
}

// New checks cfg and prepares a client; it starts nothing.
func New(cfg Config) (*Client, error) {
	switch {
	case !twin.ValidDeviceID(cfg.DeviceID):
		return nil, errclass.Invalid("deviceId", "device id %q is not valid", cfg.DeviceID)
	case cfg.Broker == "":
		return nil, errclass.Invalid("broker", "broker URL is empty")
	case cfg.Store == nil:
		return nil, errclass.Invalid("store", "no store")
	}
	if cfg.Username == "" {
		cfg.Username = cfg.DeviceID
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 500 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(60*time.Second, cfg.MinBackoff)
	}
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = 30 * time.Second
	}
	if cfg.MaxInflight <= 0 {
		cfg.MaxInflight = 8
	}
	if cfg.OpTimeout <= 0 {
		cfg.OpTimeout = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.OnDesired == nil {
		cfg.OnDesired = func(twin.Desired) {}
	}
	c := &Client{cfg: cfg, log: cfg.Logger, reportedCh: make(chan struct{}, 1), telemetryCh: make(chan struct{}, 1)}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	will, err := twin.Encode(twin.Presence{Protocol: twin.Protocol, Device: cfg.DeviceID, Online: false, Time: cfg.Now().UTC()})
	if err != nil {
		return nil, err
	}
	opts := mqtt.NewClientOptions().
		AddBroker(cfg.Broker).
		SetClientID(cfg.DeviceID).
		SetUsername(cfg.Username).
		SetPassword(cfg.Password).
		SetCleanSession(false).
		SetAutoReconnect(false). // Run reconnects, with jittered backoff
		SetConnectRetry(false).
		SetKeepAlive(cfg.KeepAlive).
		SetPingTimeout(cfg.OpTimeout).
		SetConnectTimeout(cfg.OpTimeout).
		SetWriteTimeout(cfg.OpTimeout).
		SetOrderMatters(true).
		SetBinaryWill(twin.Topic(cfg.DeviceID, twin.KindPresence), will, 1, true).
		// A persistent session may deliver messages before this session has
		// subscribed again: the default handler takes them.
		SetDefaultPublishHandler(c.onMessage).
		SetConnectionLostHandler(c.onLost)
	c.client = mqtt.NewClient(opts)
	return c, nil
}

// Counters returns the running totals.
func (c *Client) Counters() Counters {
	return Counters{
		Connects: c.connects.Load(), Accepted: c.accepted.Load(), Stale: c.stale.Load(),
		Malformed: c.malformed.Load(), Oversized: c.oversized.Load(), Acks: c.acks.Load(), TelemetrySent: c.sent.Load(),
	}
}

// Connected reports whether a session is up: connected, subscribed and
// resynced.
func (c *Client) Connected() bool { return c.connected.Load() }

// NotifyReported asks the client to publish the store's Reported document.
func (c *Client) NotifyReported() { signal(c.reportedCh) }

// NotifyTelemetry asks the client to drain the outbox.
func (c *Client) NotifyTelemetry() { signal(c.telemetryCh) }

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (c *Client) onLost(_ mqtt.Client, err error) {
	c.connected.Store(false)
	c.mu.Lock()
	lost := c.lost
	c.mu.Unlock()
	if lost != nil {
		select {
		case lost <- err:
		default:
		}
	}
}

// Run keeps a session up until ctx ends, then says goodbye (Presence
// offline, retained) and disconnects. It returns nil when ctx ends.
func (c *Client) Run(ctx context.Context) error {
	attempt := 0
	for {
		established, err := c.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if established {
			attempt = 0
		}
		wait := c.backoff(attempt)
		attempt++
		c.log.Warn("mqtt session ended", "broker", c.cfg.Broker, "err", err, "retry_in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// backoff is the jittered wait before reconnect attempt n (from 0).
func (c *Client) backoff(n int) time.Duration {
	d := c.cfg.MinBackoff
	for range n {
		d *= 2
		if d >= c.cfg.MaxBackoff {
			d = c.cfg.MaxBackoff
			break
		}
	}
	return d/2 + rand.N(d/2+1)
}

// session connects, resyncs and serves until the connection is lost or ctx
// ends. established reports whether the resync completed.
func (c *Client) session(ctx context.Context) (established bool, err error) {
	lost := make(chan error, 1)
	c.mu.Lock()
	c.lost = lost
	c.mu.Unlock()

	if err := c.wait(ctx, lost, c.client.Connect()); err != nil {
		return false, fmt.Errorf("connect to %s as %s: %w", c.cfg.Broker, c.cfg.DeviceID, err)
	}
	defer func() {
		c.connected.Store(false)
		if ctx.Err() != nil {
			c.goodbye()
		} else {
			c.client.Disconnect(0)
		}
	}()

	// Subscribe FIRST, then ask for the desired state.
	filters := map[string]byte{
		twin.Topic(c.cfg.DeviceID, twin.KindDesired):      1,
		twin.Topic(c.cfg.DeviceID, twin.KindTelemetryAck): 1,
	}
	if err := c.wait(ctx, lost, c.client.SubscribeMultiple(filters, c.onMessage)); err != nil {
		return false, fmt.Errorf("subscribe: %w", err)
	}
	if err := c.publish(ctx, lost, twin.KindPresence, true, twin.Presence{Protocol: twin.Protocol, Device: c.cfg.DeviceID, Online: true, Time: c.cfg.Now().UTC()}); err != nil {
		return false, err
	}
	have, err := c.cfg.Store.DesiredVersion()
	if err != nil {
		return false, err
	}
	if err := c.publish(ctx, lost, twin.KindDesiredGet, false, twin.DesiredRequest{Protocol: twin.Protocol, Device: c.cfg.DeviceID, Have: have}); err != nil {
		return false, err
	}
	if err := c.publishReported(ctx, lost); err != nil {
		return false, err
	}
	c.connects.Add(1)
	c.connected.Store(true)
	c.log.Info("mqtt session up", "broker", c.cfg.Broker, "device", c.cfg.DeviceID, "have", have)

	var sentUpTo uint64 // telemetry published in this session
	if sentUpTo, err = c.drain(ctx, lost, sentUpTo); err != nil {
		return true, err
	}
	for {
		select {
		case <-ctx.Done():
			return true, ctx.Err()
		case err := <-lost:
			return true, fmt.Errorf("connection lost: %w", err)
		case <-c.reportedCh:
			if err := c.publishReported(ctx, lost); err != nil {
				return true, err
			}
		case <-c.telemetryCh:
			if sentUpTo, err = c.drain(ctx, lost, sentUpTo); err != nil {
				return true, err
			}
		}
	}
}

// goodbye publishes Presence offline and disconnects cleanly.
func (c *Client) goodbye() {
	payload, err := twin.Encode(twin.Presence{Protocol: twin.Protocol, Device: c.cfg.DeviceID, Online: false, Time: c.cfg.Now().UTC()})
	if err == nil {
		c.client.Publish(twin.Topic(c.cfg.DeviceID, twin.KindPresence), 1, true, payload).WaitTimeout(c.cfg.OpTimeout)
	}
	c.client.Disconnect(250)
}

// wait waits for tok, the session's end, ctx or the op timeout.
func (c *Client) wait(ctx context.Context, lost chan error, tok mqtt.Token) error {
	t := time.NewTimer(c.cfg.OpTimeout)
	defer t.Stop()
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	case err := <-lost:
		select { // let the session loop see it too
		case lost <- err:
		default:
		}
		return fmt.Errorf("connection lost: %w", err)
	case <-t.C:
		return errclass.New(errclass.Unavailable, "", "broker did not answer within %s", c.cfg.OpTimeout)
	}
}

func (c *Client) publish(ctx context.Context, lost chan error, k twin.Kind, retained bool, doc any) error {
	payload, err := twin.Encode(doc)
	if err != nil {
		return fmt.Errorf("encode %s: %w", k, err)
	}
	if err := c.wait(ctx, lost, c.client.Publish(twin.Topic(c.cfg.DeviceID, k), 1, retained, payload)); err != nil {
		return fmt.Errorf("publish %s: %w", k, err)
	}
	return nil
}

func (c *Client) publishReported(ctx context.Context, lost chan error) error {
	r, err := c.cfg.Store.Reported()
	if err != nil {
		return err
	}
	if r.Device == "" { // nothing reported yet
		v, _ := c.cfg.Store.DesiredVersion()
		r = twin.Reported{Protocol: twin.Protocol, Device: c.cfg.DeviceID, ObservedVersion: v, Time: c.cfg.Now().UTC(), Services: []twin.ServiceStatus{}}
	}
	return c.publish(ctx, lost, twin.KindReported, true, r)
}

// drain publishes queued batches after sentUpTo, keeping at most
// MaxInflight unacknowledged, oldest first; it returns the new sentUpTo.
func (c *Client) drain(ctx context.Context, lost chan error, sentUpTo uint64) (uint64, error) {
	pending, err := c.cfg.Store.Pending(0, c.cfg.MaxInflight)
	if err != nil {
		return sentUpTo, err
	}
	for _, b := range pending {
		if b.Seq <= sentUpTo {
			continue
		}
		payload, err := twin.Encode(b)
		if err != nil {
			return sentUpTo, err
		}
		if len(payload) > twin.MaxTelemetry {
			// Never sendable: drop it rather than block the outbox forever.
			c.log.Error("telemetry batch too large; dropped", "seq", b.Seq, "bytes", len(payload))
			if _, err := c.cfg.Store.Ack(b.Seq); err != nil {
				return sentUpTo, err
			}
			continue
		}
		if err := c.wait(ctx, lost, c.client.Publish(twin.Topic(c.cfg.DeviceID, twin.KindTelemetry), 1, false, payload)); err != nil {
			return sentUpTo, fmt.Errorf("publish telemetry %d: %w", b.Seq, err)
		}
		c.sent.Add(1)
		sentUpTo = b.Seq
	}
	return sentUpTo, nil
}

// onMessage handles every message the broker delivers.
func (c *Client) onMessage(_ mqtt.Client, m mqtt.Message) {
	id, kind, err := twin.ParseTopic(m.Topic())
	if err != nil || id != c.cfg.DeviceID {
		c.malformed.Add(1)
		c.log.Warn("message on a foreign topic rejected", "topic", m.Topic())
		return
	}
	payload := m.Payload()
	switch kind {
	case twin.KindDesired:
		c.handleDesired(payload)
	case twin.KindTelemetryAck:
		c.handleAck(payload)
	default:
		c.malformed.Add(1)
		c.log.Warn("message of unexpected kind rejected", "topic", m.Topic())
	}
}

func (c *Client) reject(what string, payload []byte, err error) {
	if errclass.Is(err, errclass.TooLarge) {
		c.oversized.Add(1)
	} else {
		c.malformed.Add(1)
	}
	c.log.Warn(what+" rejected", "bytes", len(payload), "field", errclass.FieldOf(err), "err", err)
}

func (c *Client) handleDesired(payload []byte) {
	var d twin.Desired
	if err := twin.Decode(payload, twin.MaxDocument, &d, c.cfg.DeviceID); err != nil {
		c.reject("desired document", payload, err)
		return
	}
	ok, err := c.cfg.Store.AcceptDesired(d)
	if err != nil {
		// Not persisted, so not acted on; the cloud or the next resync resends.
		c.log.Error("persist desired document", "version", d.Version, "err", err)
		return
	}
	if !ok {
		c.stale.Add(1)
		c.log.Debug("stale desired document ignored", "version", d.Version)
		return
	}
	c.accepted.Add(1)
	c.log.Info("desired document accepted", "version", d.Version, "services", len(d.Services))
	c.cfg.OnDesired(d)
}

func (c *Client) handleAck(payload []byte) {
	var a twin.TelemetryAck
	if err := twin.Decode(payload, twin.MaxDocument, &a, c.cfg.DeviceID); err != nil {
		c.reject("telemetry ack", payload, err)
		return
	}
	if _, err := c.cfg.Store.Ack(a.Seq); err != nil {
		c.log.Error("apply telemetry ack", "seq", a.Seq, "err", err)
		return
	}
	c.acks.Add(1)
	signal(c.telemetryCh)
}
