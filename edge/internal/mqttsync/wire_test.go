package mqttsync

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mlfleet/mlfleet/edge/internal/boltstore"
	"github.com/mlfleet/mlfleet/shared/twin"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestWireGolden pins what the device publishes on (re)connect and on a
// clean stop, byte for byte.
func TestWireGolden(t *testing.T) {
	b := startBroker(t, "", creds)
	fixed := time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)
	d := newDevice(t, b.url(), func(c *Config) { c.Now = func() time.Time { return fixed } })
	if _, err := d.store.AcceptDesired(twin.Desired{Protocol: 1, Device: dev, Version: 9}); err != nil {
		t.Fatal(err)
	}
	stop := run(t, d.c)
	eventually(t, 5*time.Second, "reported", func() bool { return len(b.received(twin.Topic(dev, twin.KindReported))) == 1 })
	stop()
	eventually(t, 5*time.Second, "offline presence", func() bool { return len(b.received(twin.Topic(dev, twin.KindPresence))) == 2 })
	for _, tc := range []struct {
		file  string
		kind  twin.Kind
		index int
	}{
		{"presence-online.json", twin.KindPresence, 0},
		{"presence-offline.json", twin.KindPresence, 1},
		{"desired-get.json", twin.KindDesiredGet, 0},
		{"reported-initial.json", twin.KindReported, 0},
	} {
		msgs := b.received(twin.Topic(dev, tc.kind))
		if len(msgs) <= tc.index {
			t.Fatalf("%s: only %d messages", tc.file, len(msgs))
		}
		got := append(msgs[tc.index].payload, '\n')
		path := filepath.Join("testdata", "golden", tc.file)
		if *update {
			_ = os.MkdirAll(filepath.Dir(path), 0o755)
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s:\n got %s\nwant %s", tc.file, got, want)
		}
	}
}

// FuzzHandleDesired feeds arbitrary payloads to the desired handler: it
// must never panic, and must persist (and hand over) only valid documents
// newer than the stored one.
func FuzzHandleDesired(f *testing.F) {
	valid, _ := twin.Encode(twin.Desired{Protocol: 1, Device: dev, Version: 5, Services: []twin.ServiceSpec{{Name: "iris", Image: img('a')}}})
	for _, s := range [][]byte{valid, nil, []byte("{}"), []byte(`{"protocol":1,"device":"d-1","version":1,"services":[]}`),
		[]byte(`{"protocol":1,"device":"d-2","version":9,"services":[]}`), []byte(`{"protocol":1,"device":"d-1","version":3,"services":[{"name":"a","image":"x"}]}`)} {
		f.Add(s)
	}
	store, err := boltstore.Open(filepath.Join(f.TempDir(), "state.db"), boltstore.Options{})
	if err != nil {
		f.Fatal(err)
	}
	defer store.Close()
	var handed []twin.Desired
	c, err := New(Config{Broker: "tcp://127.0.0.1:1", DeviceID: dev, Store: store, OnDesired: func(d twin.Desired) { handed = append(handed, d) }})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		before, _ := store.DesiredVersion()
		n := len(handed)
		c.handleDesired(payload)
		after, _ := store.DesiredVersion()
		if len(handed) == n {
			if after != before {
				t.Fatalf("stored version moved %d -> %d without acting", before, after)
			}
			return
		}
		d := handed[len(handed)-1]
		if d.Version <= before || d.Version != after || d.Device != dev {
			t.Fatalf("handed version %d for %q; stored %d -> %d", d.Version, d.Device, before, after)
		}
		var again twin.Desired
		if err := twin.Decode(payload, twin.MaxDocument, &again, dev); err != nil {
			t.Fatalf("accepted an invalid document: %v", err)
		}
	})
}
