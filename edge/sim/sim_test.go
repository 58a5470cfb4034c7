package sim

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mlfleet/mlfleet/shared/errclass"
	"github.com/mlfleet/mlfleet/shared/twin"
)

// startFleet runs a fleet on b until the test ends.
func startFleet(t *testing.T, b *testBroker, cfg Config) *Fleet {
	t.Helper()
	cfg.MQTTURL = b.url()
	if cfg.ConnectRate == 0 {
		cfg.ConnectRate = 2000
	}
	f, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	var once sync.Once
	t.Cleanup(func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("Run did not return after cancel")
			}
		})
	})
	eventually(t, 30*time.Second, func() string { return fmt.Sprintf("online: %+v", f.Stats().Online) }, func() bool {
		return f.Stats().Online == len(cfg.Devices)
	})
	return f
}

func desired(id string, version uint64, images ...string) twin.Desired {
	d := twin.Desired{Protocol: twin.Protocol, Device: id, Version: version, IssuedAt: time.Unix(1700000000, 0).UTC(), Services: []twin.ServiceSpec{}}
	for i, img := range images {
		d.Services = append(d.Services, twin.ServiceSpec{Name: fmt.Sprintf("svc-%d", i), Image: img})
	}
	return d
}

// allReport waits until every device's last Reported document satisfies ok.
func allReport(t *testing.T, b *testBroker, ids []Identity, what string, ok func(twin.Reported) bool) {
	t.Helper()
	var bad string
	eventually(t, 30*time.Second, func() string { return what + "; e.g. " + bad }, func() bool {
		for _, id := range ids {
			r, found := b.reported(id.ID)
			if !found || !ok(r) {
				bad = fmt.Sprintf("%s: %+v", id.ID, r)
				return false
			}
		}
		return true
	})
}

func TestFleetRollsOutToEveryDevice(t *testing.T) {
	b := startBroker(t, true)
	ids := identities(50)
	f := startFleet(t, b, Config{Devices: ids, PullTime: 20 * time.Millisecond, PullJitter: 10 * time.Millisecond,
		StartTime: 20 * time.Millisecond, StartJitter: 10 * time.Millisecond, Seed: 1})

	// Every device came up the protocol's way: presence online, a request
	// for its desired state, and a Reported document with nothing yet.
	for _, id := range ids {
		if p, ok := b.presence(id.ID); !ok || !p.Online {
			t.Fatalf("%s presence = %+v, %v; want online", id.ID, p, ok)
		}
		gets := b.messages(twin.Topic(id.ID, twin.KindDesiredGet))
		if len(gets) != 1 {
			t.Fatalf("%s sent %d desired requests, want 1", id.ID, len(gets))
		}
	}
	img := image('a')
	for _, id := range ids {
		b.publishDesired(desired(id.ID, 1, img))
	}
	allReport(t, b, ids, "all Running", func(r twin.Reported) bool {
		return r.ObservedVersion == 1 && len(r.Services) == 1 && r.Services[0].Phase == twin.Running &&
			r.Services[0].Healthy && r.Services[0].Image == img && r.Services[0].Wanted == "" && r.Agent == Agent
	})
	// Each device went through the phases in order, each report carrying the
	// version it works on.
	for _, id := range ids[:5] {
		var phases []twin.Phase
		for _, p := range b.messages(twin.Topic(id.ID, twin.KindReported)) {
			var r twin.Reported
			if err := twin.Decode(p, twin.MaxDocument, &r, id.ID); err != nil {
				t.Fatalf("%s reported a malformed document: %v", id.ID, err)
			}
			if len(r.Services) > 0 {
				if r.ObservedVersion != 1 {
					t.Errorf("%s reported services with ObservedVersion %d", id.ID, r.ObservedVersion)
				}
				phases = append(phases, r.Services[0].Phase)
			}
		}
		if want := []twin.Phase{twin.Pulling, twin.Starting, twin.Running}; fmt.Sprint(phases) != fmt.Sprint(want) {
			t.Errorf("%s phases = %v, want %v", id.ID, phases, want)
		}
	}
	st := f.Stats()
	if st.Phases[twin.Running] != len(ids) || st.Online != len(ids) || st.Connects != uint64(len(ids)) || st.Malformed != 0 {
		t.Errorf("stats = %+v", st)
	}
	for _, d := range st.PerDevice {
		// presence + desired/get + 4 reports; desired received once.
		if d.Sent != 6 || d.Received != 1 || d.Version != 1 {
			t.Errorf("device stats %+v, want sent 6, received 1, version 1", d)
		}
	}
}

func TestFleetFailImagesRollBack(t *testing.T) {
	b := startBroker(t, false)
	ids := identities(20)
	good, bad := image('1'), image('2')
	const reason = "model v2 fails its health check"
	f := startFleet(t, b, Config{Devices: ids, PullTime: 5 * time.Millisecond, StartTime: 5 * time.Millisecond,
		FailImages: map[string]string{bad: reason}})
	for _, id := range ids {
		b.publishDesired(desired(id.ID, 1, good))
	}
	allReport(t, b, ids, "v1 Running", func(r twin.Reported) bool {
		return r.ObservedVersion == 1 && len(r.Services) == 1 && r.Services[0].Phase == twin.Running
	})
	for _, id := range ids {
		b.publishDesired(desired(id.ID, 2, bad))
	}
	allReport(t, b, ids, "v2 RolledBack", func(r twin.Reported) bool {
		s := r.Services
		return r.ObservedVersion == 2 && len(s) == 1 && s[0].Phase == twin.RolledBack && s[0].Reason == reason &&
			s[0].Image == good && s[0].Wanted == bad && s[0].Healthy
	})
	if st := f.Stats(); st.Phases[twin.RolledBack] != len(ids) {
		t.Errorf("phases = %v", st.Phases)
	}

	// A new service whose image always fails has nothing to fall back to.
	for _, id := range ids {
		d := desired(id.ID, 3, good, bad)
		b.publishDesired(d)
	}
	allReport(t, b, ids, "v3: svc-0 Running, svc-1 Failed", func(r twin.Reported) bool {
		s := r.Services
		return r.ObservedVersion == 3 && len(s) == 2 && s[0].Phase == twin.Running && s[0].Image == good &&
			s[1].Phase == twin.Failed && s[1].Image == "" && s[1].Wanted == bad && !s[1].Healthy && s[1].Reason == reason
	})
	// Removing services drops them.
	for _, id := range ids {
		b.publishDesired(desired(id.ID, 4))
	}
	allReport(t, b, ids, "v4: no services", func(r twin.Reported) bool {
		return r.ObservedVersion == 4 && len(r.Services) == 0
	})
}

func TestFleetIgnoresStaleVersions(t *testing.T) {
	b := startBroker(t, false)
	ids := identities(5)
	a, c := image('a'), image('c')
	f := startFleet(t, b, Config{Devices: ids})
	for _, id := range ids {
		b.publishDesired(desired(id.ID, 7, a))
	}
	allReport(t, b, ids, "v7 Running", func(r twin.Reported) bool {
		return r.ObservedVersion == 7 && len(r.Services) == 1 && r.Services[0].Phase == twin.Running
	})
	before := f.Stats()
	for _, v := range []uint64{7, 6, 1} {
		for _, id := range ids {
			b.publishDesired(desired(id.ID, v, c))
		}
	}
	eventually(t, 10*time.Second, func() string { return fmt.Sprintf("stale = %d", f.Stats().Stale) }, func() bool {
		return f.Stats().Stale == before.Stale+3*uint64(len(ids))
	})
	after := f.Stats()
	for i, id := range ids {
		r, _ := b.reported(id.ID)
		if r.ObservedVersion != 7 || r.Services[0].Image != a || r.Services[0].Phase != twin.Running {
			t.Errorf("%s after stale documents: %+v", id.ID, r)
		}
		if after.PerDevice[i].Sent != before.PerDevice[i].Sent {
			t.Errorf("%s published %d messages for stale documents", id.ID, after.PerDevice[i].Sent-before.PerDevice[i].Sent)
		}
	}
}

func TestFleetOfflineAndBack(t *testing.T) {
	b := startBroker(t, true)
	ids := identities(3)
	f := startFleet(t, b, Config{Devices: ids})
	img, img2 := image('a'), image('b')
	for _, id := range ids {
		b.publishDesired(desired(id.ID, 1, img))
	}
	allReport(t, b, ids, "v1 Running", func(r twin.Reported) bool {
		return r.ObservedVersion == 1 && len(r.Services) == 1 && r.Services[0].Phase == twin.Running
	})
	off := ids[0].ID
	if err := f.SetOnline(off, false); err != nil {
		t.Fatal(err)
	}
	// The broker publishes the will: presence offline.
	eventually(t, 10*time.Second, func() string { p, _ := b.presence(off); return fmt.Sprintf("presence %+v", p) }, func() bool {
		p, ok := b.presence(off)
		return ok && !p.Online
	})
	eventually(t, 10*time.Second, func() string { return "stats online" }, func() bool { return f.Stats().Online == len(ids)-1 })

	// A new version while offline waits in the broker (retained desired).
	b.publishDesired(desired(off, 2, img2))
	if r, _ := b.reported(off); r.ObservedVersion != 1 {
		t.Fatalf("offline device reported %+v", r)
	}
	if err := f.SetOnline(off, true); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() string { return "second desired request" }, func() bool {
		return len(b.messages(twin.Topic(off, twin.KindDesiredGet))) == 2
	})
	var req twin.DesiredRequest
	gets := b.messages(twin.Topic(off, twin.KindDesiredGet))
	// The persistent session may deliver v2 before the request is sent, so
	// the device holds 1 or 2 by then.
	if err := twin.Decode(gets[1], twin.MaxDocument, &req, off); err != nil || req.Have < 1 || req.Have > 2 {
		t.Errorf("resync request = %+v, %v; want have 1 or 2", req, err)
	}
	allReport(t, b, ids[:1], "v2 Running after reconnect", func(r twin.Reported) bool {
		return r.ObservedVersion == 2 && len(r.Services) == 1 && r.Services[0].Phase == twin.Running && r.Services[0].Image == img2
	})
	if p, ok := b.presence(off); !ok || !p.Online {
		t.Errorf("presence after reconnect = %+v", p)
	}
	// The session's counters are updated just after its reports go out.
	var st Stats
	eventually(t, 5*time.Second, func() string { return fmt.Sprintf("stats after reconnect: %+v", st.PerDevice[0]) }, func() bool {
		st = f.Stats()
		return st.PerDevice[0].Connects == 2 && st.Online == len(ids)
	})
	if err := f.SetOnline("no-such-device", false); !errclass.Is(err, errclass.NotFound) {
		t.Errorf("SetOnline(unknown) = %v, want not found", err)
	}
}

func TestFleetConnectsAtTheConfiguredRate(t *testing.T) {
	b := startBroker(t, false)
	ids := identities(10)
	start := time.Now()
	startFleet(t, b, Config{Devices: ids, ConnectRate: 100})
	// 10 connections at 100/s take at least 9 intervals of 10 ms.
	if el := time.Since(start); el < 80*time.Millisecond {
		t.Errorf("10 devices connected in %s at 100/s", el)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	ok := Config{MQTTURL: "tcp://127.0.0.1:1883", Devices: identities(2)}
	tests := []struct {
		name  string
		edit  func(*Config)
		field string
	}{
		{"no url", func(c *Config) { c.MQTTURL = "" }, "mqttUrl"},
		{"http url", func(c *Config) { c.MQTTURL = "http://x:1" }, "mqttUrl"},
		{"no devices", func(c *Config) { c.Devices = nil }, "devices"},
		{"bad id", func(c *Config) { c.Devices = []Identity{{ID: "Bad_ID", Credential: "x"}} }, "devices[0].id"},
		{"no credential", func(c *Config) { c.Devices = []Identity{{ID: "d1"}} }, "devices[0].credential"},
		{"duplicate", func(c *Config) { c.Devices = []Identity{{ID: "d1", Credential: "x"}, {ID: "d1", Credential: "y"}} }, "devices[1].id"},
		{"fail rate", func(c *Config) { c.FailRate = 1.5 }, "failRate"},
		{"crash rate", func(c *Config) { c.CrashRate = -0.1 }, "crashRate"},
		{"pull time", func(c *Config) { c.PullTime = -time.Second }, "pullTime"},
		{"start jitter", func(c *Config) { c.StartJitter = -time.Second }, "startTime"},
		{"connect rate", func(c *Config) { c.ConnectRate = -1 }, "connectRate"},
		{"fail image", func(c *Config) { c.FailImages = map[string]string{"score:latest": "x"} }, "failImages"},
		{"fail reason", func(c *Config) { c.FailImages = map[string]string{image('a'): ""} }, "failImages"},
		{"telemetry interval", func(c *Config) { c.TelemetryInterval = -time.Second }, "telemetryInterval"},
		{"telemetry too often", func(c *Config) { c.TelemetryInterval = time.Millisecond }, "telemetryInterval"},
		{"requests", func(c *Config) { c.Requests = -1 }, "requests"},
		{"traffic image", func(c *Config) { c.Traffic = map[string]Traffic{"score:latest": {}} }, "traffic"},
		{"traffic error rate", func(c *Config) { c.Traffic = map[string]Traffic{image('a'): {ErrorRate: 1.2}} }, "traffic"},
		{"traffic latency", func(c *Config) { c.Traffic = map[string]Traffic{image('a'): {Latency: -time.Second}} }, "traffic"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.edit(&cfg)
			_, err := New(cfg)
			if !errclass.Is(err, errclass.InvalidArgument) || errclass.FieldOf(err) != tt.field {
				t.Errorf("New = %v (field %q), want invalid %q", err, errclass.FieldOf(err), tt.field)
			}
		})
	}
	if _, err := New(ok); err != nil {
		t.Errorf("New(valid) = %v", err)
	}
}
