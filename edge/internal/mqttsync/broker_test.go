package mqttsync

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mlfleet/mlfleet/shared/twin"
)

// aclHook authenticates devices by id and credential and confines them to
// their own topics with the twin ACL helpers, as the cloud's broker does. It
// also records what devices subscribe and publish, in order.
type aclHook struct {
	mochi.HookBase
	creds map[string]string

	mu      sync.Mutex
	events  []string
	refused int
}

func (h *aclHook) ID() string { return "mlfleet-test-acl" }

func (h *aclHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mochi.OnConnectAuthenticate, mochi.OnACLCheck, mochi.OnSubscribed, mochi.OnPublished}, []byte{b})
}

func (h *aclHook) OnConnectAuthenticate(cl *mochi.Client, pk packets.Packet) bool {
	user := string(pk.Connect.Username)
	want, ok := h.creds[user]
	if ok && want == string(pk.Connect.Password) && cl.ID == user {
		return true
	}
	h.mu.Lock()
	h.refused++
	h.mu.Unlock()
	return false
}

func (h *aclHook) Refused() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.refused
}

func (h *aclHook) OnACLCheck(cl *mochi.Client, topic string, write bool) bool {
	id := string(cl.Properties.Username)
	if write {
		return twin.DeviceMayPublish(id, topic)
	}
	return twin.DeviceMaySubscribe(id, topic)
}

func (h *aclHook) OnSubscribed(cl *mochi.Client, pk packets.Packet, codes []byte) {
	if cl.Net.Inline {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, f := range pk.Filters {
		if i < len(codes) && codes[i] < 0x80 {
			h.events = append(h.events, "sub "+f.Filter)
		}
	}
}

func (h *aclHook) OnPublished(cl *mochi.Client, pk packets.Packet) {
	if cl.Net.Inline {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = append(h.events, "pub "+pk.TopicName)
}

func (h *aclHook) Events() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.events...)
}

// broker is an in-process mochi broker with a "cloud" inline client that
// records everything devices publish.
type broker struct {
	t    *testing.T
	srv  *mochi.Server
	hook *aclHook
	addr string

	closeOnce sync.Once
	mu        sync.Mutex
	msgs      []message
}

type message struct {
	topic   string
	payload []byte
	retain  bool
}

func startBroker(t *testing.T, addr string, creds map[string]string) *broker {
	t.Helper()
	var ln net.Listener
	var err error
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		// A restarted broker takes its old address back; poll until the
		// kernel lets it.
		if ln, err = net.Listen("tcp", addr); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	srv := mochi.New(&mochi.Options{InlineClient: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	hook := &aclHook{creds: creds}
	if err := srv.AddHook(hook, nil); err != nil {
		t.Fatal(err)
	}
	if err := srv.AddListener(listeners.NewNet("t", ln)); err != nil {
		t.Fatal(err)
	}
	b := &broker{t: t, srv: srv, hook: hook, addr: ln.Addr().String()}
	for _, k := range []twin.Kind{twin.KindDesiredGet, twin.KindReported, twin.KindPresence, twin.KindTelemetry} {
		if err := srv.Subscribe(twin.Filter(k), 1, func(cl *mochi.Client, sub packets.Subscription, pk packets.Packet) {
			b.mu.Lock()
			defer b.mu.Unlock()
			b.msgs = append(b.msgs, message{pk.TopicName, bytes.Clone(pk.Payload), pk.FixedHeader.Retain})
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.close)
	return b
}

func (b *broker) close() { b.closeOnce.Do(func() { _ = b.srv.Close() }) }

func (b *broker) url() string { return "tcp://" + b.addr }

// publish sends a message as the cloud.
func (b *broker) publish(topic string, payload []byte, retain bool) {
	b.t.Helper()
	if err := b.srv.Publish(topic, payload, retain, 1); err != nil {
		b.t.Fatal(err)
	}
}

func (b *broker) received(topic string) []message {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []message
	for _, m := range b.msgs {
		if m.topic == topic {
			out = append(out, m)
		}
	}
	return out
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// proxy forwards TCP to a target and can cut every connection abruptly.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
}

func startProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(u, c); u.Close() }()
			go func() { _, _ = io.Copy(c, u); c.Close() }()
		}
	}()
	return p
}

func (p *proxy) url() string { return "tcp://" + p.ln.Addr().String() }

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		c.Close()
	}
	p.conns = nil
}

// run starts c.Run in the background and returns a stop function that
// cancels it and waits for it to return.
func run(t *testing.T, c *Client) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run returned %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}
