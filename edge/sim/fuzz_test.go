package sim

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mlfleet/mlfleet/shared/twin"
)

// FuzzParseEnrollment: the cloud's enrollment answer is untrusted input.
func FuzzParseEnrollment(f *testing.F) {
	if seed, err := os.ReadFile(filepath.Join("testdata", "enrollment.json")); err == nil {
		f.Add(seed)
	}
	for _, s := range []string{`{}`, `{"deviceId":"d-1","credential":"x"}`, `{"deviceId":"d-1","credential":"x","mqtt":{"url":"::"}}`, `[1]`, `null`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		id, err := ParseEnrollment(raw)
		if err != nil {
			return
		}
		if !twin.ValidDeviceID(id.ID) || id.Credential == "" {
			t.Fatalf("accepted %q as %+v", raw, id)
		}
	})
}

// FuzzDesired feeds arbitrary payloads to a device's desired handler, as a
// compromised broker or cloud could: it must never panic, never go back in
// version, and every report it makes must be one the cloud accepts.
func FuzzDesired(f *testing.F) {
	for _, d := range []twin.Desired{desired("dev-1", 1, image('a')), desired("dev-1", 2, image('a'), image('b')), desired("dev-1", 1)} {
		p, _ := twin.Encode(d)
		f.Add(p, p)
	}
	f.Add([]byte(`{"protocol":1,"device":"dev-2","version":9,"services":[]}`), []byte(`{}`))
	f.Add([]byte(`{"protocol":1,"device":"dev-1","version":0,"services":[]}`), []byte(`null`))
	f.Fuzz(func(t *testing.T, first, second []byte) {
		m := newMachine(t, Config{PullTime: time.Second, StartTime: time.Second, FailRate: 0.3, CrashRate: 0.3,
			FailImages: map[string]string{image('b'): "bad"}})
		fl := &Fleet{cfg: *m.rt.cfg, rt: m.rt, log: discard}
		fl.cfg.Clock = m.clock
		var last uint64
		for _, p := range [][]byte{first, second} {
			fl.handleDesired(m.dev, p)
			m.advance(time.Minute)
			if m.dev.version < last {
				t.Fatalf("version went back from %d to %d", last, m.dev.version)
			}
			last = m.dev.version
		}
		for _, r := range m.docs {
			p, err := twin.Encode(r)
			if err != nil {
				t.Fatal(err)
			}
			var back twin.Reported
			if err := twin.Decode(p, twin.MaxDocument, &back, "dev-1"); err != nil {
				t.Fatalf("the cloud would refuse report %s: %v", p, err)
			}
		}
	})
}

var discard = slog.New(slog.DiscardHandler)
