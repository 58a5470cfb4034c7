// Package mqttbus is the cloud's MQTT client (paho): it publishes desired
// state and telemetry acknowledgements to devices and feeds what devices
// publish (reported state, presence, desired-state requests, telemetry) to a
// handler. It works the same against the embedded broker and an external
// one (mosquitto).
package mqttbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/mlfleet/mlfleet/shared/twin"
)

// Message is one message from a device topic.
type Message struct {
	Topic   string
	Payload []byte
}

// Handler ingests a batch of device messages (in arrival order).
type Handler func(ctx context.Context, msgs []Message)

// maxBatch bounds how many messages one Handler call gets.
const maxBatch = 1024

// Config configures the client.
type Config struct {
	// URL of the broker, e.g. tcp://127.0.0.1:1883.
	URL                string
	Username, Password string
	// ClientID is fixed so the broker keeps the session (default "mlfleet-cloud").
	ClientID string
	Handler  Handler
	// OnConnect, if set, runs after every (re)connect, once subscribed (the
	// cloud republishes desired states there).
	OnConnect func(ctx context.Context)
	Logger    *slog.Logger
	// PublishTimeout bounds one publish (default 10s).
	PublishTimeout time.Duration
}

// Inline is a broker the cloud runs in its own process: it publishes and
// subscribes without a network client (the embedded broker).
type Inline interface {
	Publish(topic string, payload []byte, retain bool, qos byte) error
	Subscribe(filter string, id int, fn func(topic string, payload []byte)) error
}

// Bus is a connected cloud client.
type Bus struct {
	cfg    Config
	client paho.Client
	inline Inline
	ctx    context.Context
	cancel context.CancelFunc
	// in carries messages from paho's callback to the batcher; when it is
	// full the callback blocks, which slows the broker down (backpressure).
	in chan Message
	// connected signals the Run loop that the client (re)connected.
	connected chan struct{}

	closeOnce sync.Once
}

var filters = map[string]byte{
	twin.Filter(twin.KindReported):   1,
	twin.Filter(twin.KindPresence):   1,
	twin.Filter(twin.KindDesiredGet): 1,
	twin.Filter(twin.KindTelemetry):  1,
}

// New prepares the client; Run connects it.
func New(cfg Config) (*Bus, error) {
	if cfg.URL == "" || cfg.Handler == nil {
		return nil, errors.New("mqttbus: URL and Handler are required")
	}
	if cfg.ClientID == "" {
		cfg.ClientID = "mlfleet-cloud"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.PublishTimeout == 0 {
		cfg.PublishTimeout = 10 * time.Second
	}
	b := &Bus{cfg: cfg, in: make(chan Message, 16384), connected: make(chan struct{}, 1)}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	onMessage := func(_ paho.Client, m paho.Message) {
		select {
		case b.in <- Message{Topic: m.Topic(), Payload: m.Payload()}:
		case <-b.ctx.Done():
		}
	}
	opts := paho.NewClientOptions().
		AddBroker(cfg.URL).
		SetClientID(cfg.ClientID).
		SetUsername(cfg.Username).
		SetPassword(cfg.Password).
		SetCleanSession(false).
		SetOrderMatters(true).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(10 * time.Second).
		SetKeepAlive(30 * time.Second).
		SetDefaultPublishHandler(onMessage).
		SetOnConnectHandler(func(c paho.Client) {
			// Subscribe on every (re)connect; the session may have been lost.
			t := c.SubscribeMultiple(filters, onMessage)
			if t.WaitTimeout(cfg.PublishTimeout) && t.Error() != nil {
				cfg.Logger.Error("subscribe to device topics", "err", t.Error())
			}
			select {
			case b.connected <- struct{}{}:
			default:
			}
		}).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			cfg.Logger.Warn("MQTT connection lost; reconnecting", "err", err)
		})
	b.client = paho.NewClient(opts)
	return b, nil
}

// NewInline makes a Bus over a broker in the same process (cfg.URL unused).
func NewInline(in Inline, cfg Config) (*Bus, error) {
	cfg.URL = "inline"
	b, err := New(cfg)
	if err != nil {
		return nil, err
	}
	b.inline = in
	return b, nil
}

// Run connects (retrying until the broker answers), feeds device messages to
// the handler in batches, and stays connected until ctx ends.
func (b *Bus) Run(ctx context.Context) error {
	if b.inline != nil {
		return b.runInline(ctx)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.batch(ctx)
	}()
	defer func() { <-done }()
	onConnectDone := make(chan struct{})
	go func() {
		defer close(onConnectDone)
		for {
			select {
			case <-ctx.Done():
				return
			case <-b.ctx.Done():
				return
			case <-b.connected:
				if b.cfg.OnConnect != nil {
					b.cfg.OnConnect(ctx)
				}
			}
		}
	}()
	defer func() { <-onConnectDone }()
	t := b.client.Connect()
	select {
	case <-t.Done():
		if err := t.Error(); err != nil {
			return fmt.Errorf("mqttbus: connect %s: %w", b.cfg.URL, err)
		}
	case <-ctx.Done():
	}
	<-ctx.Done()
	return b.Close()
}

func (b *Bus) runInline(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.batch(ctx)
	}()
	defer func() { <-done }()
	id := 1
	for filter := range filters {
		err := b.inline.Subscribe(filter, id, func(topic string, payload []byte) {
			select {
			case b.in <- Message{Topic: topic, Payload: append([]byte(nil), payload...)}:
			case <-b.ctx.Done():
			}
		})
		if err != nil {
			return fmt.Errorf("mqttbus: subscribe %s: %w", filter, err)
		}
		id++
	}
	if b.cfg.OnConnect != nil {
		b.cfg.OnConnect(ctx)
	}
	<-ctx.Done()
	return b.Close()
}

// batch hands messages to the handler: whatever has arrived, up to maxBatch
// at a time, so a burst costs few store transactions.
func (b *Bus) batch(ctx context.Context) {
	buf := make([]Message, 0, maxBatch)
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.ctx.Done():
			return
		case m := <-b.in:
			buf = append(buf[:0], m)
		}
	drain:
		for len(buf) < maxBatch {
			select {
			case m := <-b.in:
				buf = append(buf, m)
			default:
				break drain
			}
		}
		b.cfg.Handler(ctx, buf)
	}
}

// Connected reports whether the client is connected now.
func (b *Bus) Connected() bool { return b.inline != nil || b.client.IsConnectionOpen() }

// Close disconnects. It is idempotent.
func (b *Bus) Close() error {
	b.closeOnce.Do(func() {
		b.cancel()
		if b.inline == nil && b.client.IsConnected() {
			b.client.Disconnect(250)
		}
	})
	return nil
}

func (b *Bus) publish(ctx context.Context, topic string, retained bool, v any) error {
	payload, err := twin.Encode(v)
	if err != nil {
		return err
	}
	if b.inline != nil {
		return b.inline.Publish(topic, payload, retained, 1)
	}
	if !b.client.IsConnectionOpen() {
		return fmt.Errorf("mqttbus: publish %s: not connected", topic)
	}
	t := b.client.Publish(topic, 1, retained, payload)
	timeout := time.NewTimer(b.cfg.PublishTimeout)
	defer timeout.Stop()
	select {
	case <-t.Done():
		return t.Error()
	case <-timeout.C:
		return fmt.Errorf("mqttbus: publish %s: timed out", topic)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// PublishDesired publishes a device's desired state, retained.
func (b *Bus) PublishDesired(ctx context.Context, d twin.Desired) error {
	return b.publish(ctx, twin.Topic(d.Device, twin.KindDesired), true, &d)
}

// PublishTelemetryAck acknowledges a device's telemetry.
func (b *Bus) PublishTelemetryAck(ctx context.Context, a twin.TelemetryAck) error {
	return b.publish(ctx, twin.Topic(a.Device, twin.KindTelemetryAck), false, &a)
}
