package sim

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mlfleet/mlfleet/shared/twin"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// fakeClock is a Clock that moves only when told.
type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time                       { return c.now }
func (c *fakeClock) After(time.Duration) <-chan time.Time { return nil } // the tests call runDue

var epoch = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// machine is one device's state machine on a fake clock, with no broker:
// what it would publish is recorded.
type machine struct {
	t     *testing.T
	clock *fakeClock
	rt    *engine
	dev   *device
	docs  []twin.Reported
}

func newMachine(t *testing.T, cfg Config) *machine {
	m := &machine{t: t, clock: &fakeClock{now: epoch}}
	m.rt = &engine{cfg: &cfg, report: func(d *device, now time.Time) { m.docs = append(m.docs, d.reported(now)) }}
	m.rt.sched = newScheduler(m.clock, m.rt.step)
	m.dev = &device{id: "dev-1", cred: "x", want: true, rng: uint64(cfg.Seed)}
	return m
}

// advance moves the clock by d, firing what falls due on the way in order.
func (m *machine) advance(d time.Duration) {
	end := m.clock.now.Add(d)
	for {
		next, ok := m.rt.sched.runDue(m.clock.now)
		if !ok || next.After(end) {
			break
		}
		m.clock.now = next
	}
	m.clock.now = end
	m.rt.sched.runDue(end)
}

// short names an image by the last character of its digest.
func short(img string) string {
	if img == "" {
		return "-"
	}
	return img[len(img)-1:]
}

// summary is a one-line form of a Reported document.
func summary(r twin.Reported, since time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "t+%s v%d", r.Time.Sub(since), r.ObservedVersion)
	for _, s := range r.Services {
		fmt.Fprintf(&b, " %s:%s:%s>%s", s.Name, s.Phase, short(s.Image), short(s.Wanted))
		if s.Healthy {
			b.WriteString(":ok")
		}
		if s.Reason != "" {
			fmt.Fprintf(&b, ":%q", s.Reason)
		}
	}
	return b.String()
}

// step is one thing that happens to a machine: a desired document arrives,
// or time passes.
type step struct {
	doc     *twin.Desired
	advance time.Duration
	set     func(*Config) // change the settings from here on
}

func want(version uint64, images ...string) step {
	d := desired("dev-1", version, images...)
	return step{doc: &d}
}

func wait(d time.Duration) step { return step{advance: d} }

func TestStateMachine(t *testing.T) {
	a, b, c := image('a'), image('b'), image('c')
	base := Config{PullTime: 10 * time.Second, StartTime: 5 * time.Second}
	tests := []struct {
		name   string
		cfg    func(*Config)
		steps  []step
		want   []string
		golden string
	}{
		{
			name:  "install then update",
			steps: []step{want(1, a), wait(time.Minute), want(2, b), wait(time.Minute)},
			want: []string{
				"t+0s v1 svc-0:Pulling:->a",
				"t+10s v1 svc-0:Starting:->a",
				"t+15s v1 svc-0:Running:a>-:ok",
				"t+1m0s v2 svc-0:Pulling:a>b:ok",
				"t+1m10s v2 svc-0:Starting:a>b:ok",
				"t+1m15s v2 svc-0:Running:b>-:ok",
			},
			golden: "reported_update.golden.json",
		},
		{
			name:  "bad image rolls back and keeps the old one",
			cfg:   func(c *Config) { c.FailImages = map[string]string{b: "v2 is bad"} },
			steps: []step{want(1, a), wait(time.Minute), want(2, b), wait(time.Minute)},
			want: []string{
				"t+0s v1 svc-0:Pulling:->a",
				"t+10s v1 svc-0:Starting:->a",
				"t+15s v1 svc-0:Running:a>-:ok",
				"t+1m0s v2 svc-0:Pulling:a>b:ok",
				"t+1m10s v2 svc-0:Starting:a>b:ok",
				`t+1m15s v2 svc-0:RolledBack:a>b:ok:"v2 is bad"`,
			},
			golden: "reported_rollback.golden.json",
		},
		{
			name:  "bad image with nothing to fall back to fails",
			cfg:   func(c *Config) { c.FailImages = map[string]string{a: "broken"} },
			steps: []step{want(1, a), wait(time.Minute)},
			want: []string{
				"t+0s v1 svc-0:Pulling:->a",
				"t+10s v1 svc-0:Starting:->a",
				`t+15s v1 svc-0:Failed:->a:"broken"`,
			},
		},
		{
			name:  "every update fails",
			cfg:   func(c *Config) { c.FailRate = 1 },
			steps: []step{want(1, a), wait(time.Minute)},
			// Seed 0 draws a start failure first (TestFates covers pulls).
			want: []string{
				"t+0s v1 svc-0:Pulling:->a",
				"t+10s v1 svc-0:Starting:->a",
				`t+15s v1 svc-0:Failed:->a:"` + ReasonStart + `"`,
			},
		},
		{
			name:  "every started version crashes",
			cfg:   func(c *Config) { c.CrashRate = 1 },
			steps: []step{want(1, a), wait(time.Minute)},
			want: []string{
				"t+0s v1 svc-0:Pulling:->a",
				"t+10s v1 svc-0:Starting:->a",
				"t+15s v1 svc-0:Running:a>-:ok",
				`t+20s v1 svc-0:Failed:->a:"` + ReasonCrash + `"`,
			},
		},
		{
			name:  "a crash rolls back to the previous image",
			steps: []step{want(1, a), wait(time.Minute), {set: func(c *Config) { c.CrashRate = 1 }}, want(2, b), wait(time.Minute)},
			want: []string{
				"t+0s v1 svc-0:Pulling:->a",
				"t+10s v1 svc-0:Starting:->a",
				"t+15s v1 svc-0:Running:a>-:ok",
				"t+1m0s v2 svc-0:Pulling:a>b:ok",
				"t+1m10s v2 svc-0:Starting:a>b:ok",
				"t+1m15s v2 svc-0:Running:b>-:ok",
				`t+1m20s v2 svc-0:RolledBack:a>b:ok:"` + ReasonCrash + `"`,
			},
		},
		{
			name:  "stale and duplicate versions are ignored",
			steps: []step{want(3, a), wait(time.Minute), want(3, b), want(2, c), wait(time.Minute)},
			want: []string{
				"t+0s v3 svc-0:Pulling:->a",
				"t+10s v3 svc-0:Starting:->a",
				"t+15s v3 svc-0:Running:a>-:ok",
			},
		},
		{
			name:  "a newer version overtakes an update in flight",
			steps: []step{want(1, a), wait(time.Minute), want(2, b), wait(12 * time.Second), want(3, c), wait(time.Minute)},
			want: []string{
				"t+0s v1 svc-0:Pulling:->a",
				"t+10s v1 svc-0:Starting:->a",
				"t+15s v1 svc-0:Running:a>-:ok",
				"t+1m0s v2 svc-0:Pulling:a>b:ok",
				"t+1m10s v2 svc-0:Starting:a>b:ok",
				"t+1m12s v3 svc-0:Pulling:a>c:ok",
				"t+1m22s v3 svc-0:Starting:a>c:ok",
				"t+1m27s v3 svc-0:Running:c>-:ok",
			},
		},
		{
			name:  "going back to the serving image cancels the update",
			steps: []step{want(1, a), wait(time.Minute), want(2, b), wait(5 * time.Second), want(3, a), wait(time.Minute)},
			want: []string{
				"t+0s v1 svc-0:Pulling:->a",
				"t+10s v1 svc-0:Starting:->a",
				"t+15s v1 svc-0:Running:a>-:ok",
				"t+1m0s v2 svc-0:Pulling:a>b:ok",
				"t+1m5s v3 svc-0:Running:a>-:ok",
			},
		},
		{
			name:  "an unchanged service keeps running and a removed one is dropped",
			steps: []step{want(1, a, b), wait(time.Minute), want(2, a), want(3, a), wait(time.Minute)},
			want: []string{
				"t+0s v1 svc-0:Pulling:->a svc-1:Pulling:->b",
				"t+10s v1 svc-0:Starting:->a svc-1:Pulling:->b",
				"t+10s v1 svc-0:Starting:->a svc-1:Starting:->b",
				"t+15s v1 svc-0:Running:a>-:ok svc-1:Starting:->b",
				"t+15s v1 svc-0:Running:a>-:ok svc-1:Running:b>-:ok",
				"t+1m0s v2 svc-0:Running:a>-:ok",
				"t+1m0s v3 svc-0:Running:a>-:ok",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			m := newMachine(t, cfg)
			for _, s := range tt.steps {
				if s.set != nil {
					s.set(m.rt.cfg)
				} else if s.doc != nil {
					m.rt.apply(m.dev, *s.doc, m.clock.now)
				} else {
					m.advance(s.advance)
				}
			}
			var got []string
			for _, r := range m.docs {
				got = append(got, summary(r, epoch))
				if r.Protocol != twin.Protocol || r.Device != "dev-1" || r.Agent != Agent {
					t.Errorf("report header %+v", r)
				}
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("reports:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			if tt.golden != "" {
				checkGolden(t, tt.golden, m.docs)
			}
		})
	}
}

// TestFates checks that the rates are honoured over many draws, and that
// failures split between pulls and starts.
func TestFates(t *testing.T) {
	tests := []struct {
		fail, crash float64
	}{{0, 0}, {0.1, 0}, {0, 0.2}, {0.3, 0.3}, {1, 0}, {0, 1}}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("fail=%g,crash=%g", tt.fail, tt.crash), func(t *testing.T) {
			rt := &engine{cfg: &Config{FailRate: tt.fail, CrashRate: tt.crash}}
			d := &device{rng: 7}
			const n = 20000
			var count [4]int
			for range n {
				count[rt.drawFate(d)]++
			}
			near := func(got int, p float64) bool { return abs(float64(got)/n-p) < 0.02 }
			failed := count[fateFailPull] + count[fateFailStart]
			if !near(failed, tt.fail) || !near(count[fateCrash], (1-tt.fail)*tt.crash) {
				t.Errorf("fates %v of %d", count, n)
			}
			if tt.fail > 0 && (!near(count[fateFailPull], tt.fail/2) || !near(count[fateFailStart], tt.fail/2)) {
				t.Errorf("failures split %d pull / %d start", count[fateFailPull], count[fateFailStart])
			}
		})
	}
}

func abs(x float64) float64 { return max(x, -x) }

func TestJitterStaysInBounds(t *testing.T) {
	d := &device{rng: 42}
	for range 10000 {
		if j := d.jitter(10*time.Second, 3*time.Second); j < 7*time.Second || j > 13*time.Second {
			t.Fatalf("jitter(10s, 3s) = %s", j)
		}
		if j := d.jitter(time.Second, 5*time.Second); j < 0 {
			t.Fatalf("jitter(1s, 5s) = %s, negative", j)
		}
	}
}

// checkGolden compares the JSON wire form of docs with testdata/name and
// checks that each document decodes strictly as the cloud decodes it.
func checkGolden(t *testing.T, name string, docs []twin.Reported) {
	t.Helper()
	var buf bytes.Buffer
	for _, d := range docs {
		p, err := twin.Encode(d)
		if err != nil {
			t.Fatal(err)
		}
		var back twin.Reported
		if err := twin.Decode(p, twin.MaxDocument, &back, d.Device); err != nil {
			t.Errorf("the cloud would refuse %s: %v", p, err)
		}
		buf.Write(p)
		buf.WriteByte('\n')
	}
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	wantBytes, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(buf.Bytes(), wantBytes) {
		t.Errorf("wire form differs from %s:\n%s", path, buf.Bytes())
	}
	var first map[string]any
	if err := json.Unmarshal(bytes.SplitN(wantBytes, []byte("\n"), 2)[0], &first); err != nil || first["observedVersion"] == nil {
		t.Errorf("golden %s: first document has no observedVersion (%v)", path, err)
	}
}
