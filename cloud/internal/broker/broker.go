// Package broker embeds an MQTT broker (mochi-mqtt) in mlfleet-cloud. Its
// authentication and ACL come from the device registry: a device connects
// with its id as client id and username and its credential as password, and
// may publish and subscribe only its own topics (shared/twin), its last will
// included. The cloud's own client, with a secret generated at start, is the
// only one allowed everywhere.
package broker

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mlfleet/mlfleet/shared/twin"
)

// Authenticator checks device credentials.
type Authenticator interface {
	AuthenticateDevice(ctx context.Context, id, credential string) error
}

// Config configures the broker.
type Config struct {
	// Addr is the TCP listen address (e.g. "127.0.0.1:1883"; port 0 picks one).
	Addr string
	Auth Authenticator
	// CloudUser and CloudPassword are the cloud's own credentials.
	CloudUser, CloudPassword string
	Logger                   *slog.Logger
}

// Broker is the embedded broker.
type Broker struct {
	cfg    Config
	server *mqtt.Server
	ln     net.Listener
	hook   *aclHook

	closeOnce sync.Once
}

// New binds the listener and prepares the broker; Run serves.
func New(cfg Config) (*Broker, error) {
	if cfg.Auth == nil || cfg.CloudUser == "" || cfg.CloudPassword == "" {
		return nil, errors.New("broker: Auth, CloudUser and CloudPassword are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("broker: listen on %s: %w", cfg.Addr, err)
	}
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = twin.MaxTelemetry + 64<<10
	caps.MaximumSessionExpiryInterval = 7 * 24 * 3600
	// Devices get a handful of messages per change, and the cloud talks to
	// the broker in process (Publish, Subscribe), not through a client
	// queue: mochi's default of 8192 pending writes per client costs 64 KB
	// per connection, 640 MB for 10,000 devices.
	caps.MaximumClientWritesPending = 256
	server := mqtt.New(&mqtt.Options{
		Capabilities: caps,
		Logger:       cfg.Logger.With("component", "mqtt"),
		InlineClient: true,
	})
	hook := &aclHook{cfg: cfg, log: cfg.Logger}
	if err := server.AddHook(hook, nil); err != nil {
		ln.Close()
		return nil, err
	}
	if err := server.AddListener(listeners.NewNet("mlfleet", ln)); err != nil {
		ln.Close()
		return nil, err
	}
	return &Broker{cfg: cfg, server: server, ln: ln, hook: hook}, nil
}

// Addr is the address devices connect to.
func (b *Broker) Addr() string { return b.ln.Addr().String() }

// URL is the broker's URL for clients ("tcp://host:port").
func (b *Broker) URL() string { return "tcp://" + b.Addr() }

// Run serves until ctx ends.
func (b *Broker) Run(ctx context.Context) error {
	if err := b.server.Serve(); err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	<-ctx.Done()
	return b.Close()
}

// Close stops the broker. It is idempotent.
func (b *Broker) Close() error {
	var err error
	b.closeOnce.Do(func() { err = b.server.Close() })
	return err
}

// Publish sends a message from the cloud itself, in process (the ACL does
// not apply to the cloud).
func (b *Broker) Publish(topic string, payload []byte, retain bool, qos byte) error {
	return b.server.Publish(topic, payload, retain, qos)
}

// Subscribe delivers, in process, every message matching filter to fn (and
// the retained ones at once). fn runs on the publishing client's goroutine:
// it must not block for long.
func (b *Broker) Subscribe(filter string, id int, fn func(topic string, payload []byte)) error {
	return b.server.Subscribe(filter, id, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		fn(pk.TopicName, pk.Payload)
	})
}

// Rejected counts connections and packets the ACL refused.
func (b *Broker) Rejected() (connects, acl, wills uint64) {
	b.hook.mu.Lock()
	defer b.hook.mu.Unlock()
	return b.hook.badConnects, b.hook.badACL, b.hook.badWills
}

type aclHook struct {
	mqtt.HookBase
	cfg Config
	log *slog.Logger

	mu                            sync.Mutex
	badConnects, badACL, badWills uint64
}

func (h *aclHook) ID() string { return "mlfleet-acl" }

func (h *aclHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnWill}, []byte{b})
}

func (h *aclHook) count(n *uint64) {
	h.mu.Lock()
	*n++
	h.mu.Unlock()
}

func (h *aclHook) isCloud(user, pass []byte) bool {
	return subtle.ConstantTimeCompare(user, []byte(h.cfg.CloudUser)) == 1 &&
		subtle.ConstantTimeCompare(pass, []byte(h.cfg.CloudPassword)) == 1
}

// OnConnectAuthenticate admits the cloud and enrolled devices. A device must
// use its id as client id, and may only set a will on its own presence topic.
func (h *aclHook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	c := pk.Connect
	if h.isCloud(c.Username, c.Password) {
		return true
	}
	id := string(c.Username)
	ok := twin.ValidDeviceID(id) && c.ClientIdentifier == id &&
		h.cfg.Auth.AuthenticateDevice(context.Background(), id, string(c.Password)) == nil
	if ok && c.WillFlag && !willAllowed(id, c.WillTopic) {
		h.count(&h.badWills)
		h.log.Warn("refused device will outside its topics", "device", id, "topic", c.WillTopic)
		return false
	}
	if !ok {
		h.count(&h.badConnects)
		h.log.Info("refused MQTT connect", "username", id, "client", c.ClientIdentifier)
	}
	return ok
}

func willAllowed(id, topic string) bool {
	return topic == twin.Topic(id, twin.KindPresence)
}

// OnACLCheck confines devices to their own topics.
func (h *aclHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	user := cl.Properties.Username
	if string(user) == h.cfg.CloudUser {
		return true
	}
	id := string(user)
	var ok bool
	if write {
		ok = twin.DeviceMayPublish(id, topic)
	} else {
		ok = twin.DeviceMaySubscribe(id, topic)
	}
	if !ok {
		h.count(&h.badACL)
	}
	return ok
}

// OnWill checks the will again when it fires (mochi does not check will
// topics against the ACL, and an error here would not stop the will): a will
// outside the device's presence topic is sent to that topic instead.
func (h *aclHook) OnWill(cl *mqtt.Client, will mqtt.Will) (mqtt.Will, error) {
	id := string(cl.Properties.Username)
	if id == h.cfg.CloudUser || willAllowed(id, will.TopicName) {
		return will, nil
	}
	h.count(&h.badWills)
	will.TopicName = twin.Topic(id, twin.KindPresence)
	return will, nil
}
