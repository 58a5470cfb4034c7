package sim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mlfleet/mlfleet/shared/twin"
)

// confineHook lets any device in whose client id is its user name, and
// confines it to its own topics with the twin ACL, as the cloud's broker
// does. It counts refusals, which a correct fleet never causes.
type confineHook struct {
	mochi.HookBase
	mu      sync.Mutex
	refused []string
}

func (h *confineHook) ID() string { return "sim-test-confine" }

func (h *confineHook) Provides(b byte) bool {
	return b == mochi.OnConnectAuthenticate || b == mochi.OnACLCheck
}

func (h *confineHook) OnConnectAuthenticate(cl *mochi.Client, pk packets.Packet) bool {
	return twin.ValidDeviceID(cl.ID) && string(pk.Connect.Username) == cl.ID && len(pk.Connect.Password) > 0
}

func (h *confineHook) OnACLCheck(cl *mochi.Client, topic string, write bool) bool {
	id := string(cl.Properties.Username)
	ok := twin.DeviceMaySubscribe(id, topic)
	if write {
		ok = twin.DeviceMayPublish(id, topic)
	}
	if !ok {
		h.mu.Lock()
		h.refused = append(h.refused, fmt.Sprintf("%s write=%v %s", id, write, topic))
		h.mu.Unlock()
	}
	return ok
}

func (h *confineHook) Refused() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.refused...)
}

// testBroker is an in-process mochi broker on 127.0.0.1:0 with a "cloud"
// inline client that keeps what devices publish: the last message per topic,
// and (when keepAll) every message in order.
type testBroker struct {
	t    testing.TB
	srv  *mochi.Server
	hook *confineHook
	addr string

	closeOnce sync.Once

	mu      sync.Mutex
	keepAll bool
	last    map[string][]byte
	all     []brokerMsg
	count   int
}

type brokerMsg struct {
	topic   string
	payload []byte
}

func startBroker(t testing.TB, keepAll bool) *testBroker {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := mochi.New(&mochi.Options{InlineClient: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	b := &testBroker{t: t, srv: srv, hook: &confineHook{}, addr: ln.Addr().String(), keepAll: keepAll, last: map[string][]byte{}}
	if err := srv.AddHook(b.hook, nil); err != nil {
		t.Fatal(err)
	}
	if err := srv.AddListener(listeners.NewNet("sim", ln)); err != nil {
		t.Fatal(err)
	}
	for _, k := range []twin.Kind{twin.KindDesiredGet, twin.KindReported, twin.KindPresence} {
		if err := srv.Subscribe(twin.Filter(k), 1, func(_ *mochi.Client, _ packets.Subscription, pk packets.Packet) {
			p := bytes.Clone(pk.Payload)
			b.mu.Lock()
			defer b.mu.Unlock()
			b.count++
			b.last[pk.TopicName] = p
			if b.keepAll {
				b.all = append(b.all, brokerMsg{pk.TopicName, p})
			}
		}); err != nil {
			t.Fatal(err)
		}
	}
	// Telemetry is kept like the rest and acknowledged, as the cloud does.
	if err := srv.Subscribe(twin.Filter(twin.KindTelemetry), 2, func(_ *mochi.Client, _ packets.Subscription, pk packets.Packet) {
		p := bytes.Clone(pk.Payload)
		b.mu.Lock()
		b.count++
		b.last[pk.TopicName] = p
		if b.keepAll {
			b.all = append(b.all, brokerMsg{pk.TopicName, p})
		}
		b.mu.Unlock()
		id, _, err := twin.ParseTopic(pk.TopicName)
		var batch twin.Telemetry
		if err != nil || twin.Decode(p, twin.MaxTelemetry, &batch, id) != nil {
			return // the test that sent it checks the payload
		}
		ack, _ := json.Marshal(twin.TelemetryAck{Protocol: twin.Protocol, Device: id, Seq: batch.Seq})
		_ = srv.Publish(twin.Topic(id, twin.KindTelemetryAck), ack, false, 1)
	}); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		b.close()
		if r := b.hook.Refused(); len(r) > 0 {
			t.Errorf("the broker refused %d operations, first %s", len(r), r[0])
		}
	})
	return b
}

func (b *testBroker) close() { b.closeOnce.Do(func() { _ = b.srv.Close() }) }

func (b *testBroker) url() string { return "tcp://" + b.addr }

// publishDesired publishes doc on its device's desired topic, retained, as
// the cloud does.
func (b *testBroker) publishDesired(doc twin.Desired) {
	b.t.Helper()
	if doc.Protocol == 0 {
		doc.Protocol = twin.Protocol
	}
	payload, err := json.Marshal(doc)
	if err != nil {
		b.t.Fatal(err)
	}
	if err := b.srv.Publish(twin.Topic(doc.Device, twin.KindDesired), payload, true, 1); err != nil {
		b.t.Fatal(err)
	}
}

// reported is the last Reported document of device id.
func (b *testBroker) reported(id string) (twin.Reported, bool) {
	b.mu.Lock()
	p, ok := b.last[twin.Topic(id, twin.KindReported)]
	b.mu.Unlock()
	var r twin.Reported
	if !ok || twin.Decode(p, twin.MaxDocument, &r, id) != nil {
		return r, false
	}
	return r, true
}

// presence is the last Presence of device id.
func (b *testBroker) presence(id string) (twin.Presence, bool) {
	b.mu.Lock()
	p, ok := b.last[twin.Topic(id, twin.KindPresence)]
	b.mu.Unlock()
	var pr twin.Presence
	if !ok || twin.Decode(p, twin.MaxDocument, &pr, id) != nil {
		return pr, false
	}
	return pr, true
}

// messages returns every message kept on topic, in order.
func (b *testBroker) messages(topic string) [][]byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out [][]byte
	for _, m := range b.all {
		if m.topic == topic {
			out = append(out, m.payload)
		}
	}
	return out
}

func (b *testBroker) total() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.count
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, within time.Duration, what func() string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting: %s", within, what())
		}
		time.Sleep(2 * time.Millisecond) // poll interval, not a wait for an outcome
	}
}

// identities makes n test identities.
func identities(n int) []Identity {
	out := make([]Identity, n)
	for i := range out {
		out[i] = Identity{ID: fmt.Sprintf("dev-%04d", i), Credential: "mld_secret-" + fmt.Sprint(i)}
	}
	return out
}

// image returns a valid image reference pinned by a digest made of c.
func image(c byte) string {
	return "registry.local:5000/acme/score@sha256:" + strings.Repeat(string(c), 64)
}
