package twin

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mlfleet/mlfleet/shared/errclass"
)

var update = flag.Bool("update", false, "rewrite golden files")

const img = "127.0.0.1:8480/acme/models/iris@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func sampleDesired() *Desired {
	return &Desired{Protocol: Protocol, Device: "d-1", Version: 7, IssuedAt: t0, Services: []ServiceSpec{{
		Name: "iris", Image: img, Port: 8080, Env: map[string]string{"LOG_LEVEL": "info"},
		Resources: Resources{MemoryBytes: 64 << 20, CPUMillis: 500},
		Health:    Probe{Path: "/healthz", StartTimeoutMs: 30000},
		Pull:      &PullAuth{Username: "d-1", Password: "secret", ExpiresAt: t0.Add(time.Hour), PlainHTTP: true},
	}}}
}

func sampleReported() *Reported {
	return &Reported{Protocol: Protocol, Device: "d-1", ObservedVersion: 7, Time: t0, Agent: "mlfleet-edge/dev",
		Services: []ServiceStatus{{Name: "iris", Phase: Running, Image: img, Healthy: true, Since: t0}}}
}

// TestGolden pins the wire format of every document.
func TestGolden(t *testing.T) {
	docs := map[string]any{
		"desired":       sampleDesired(),
		"reported":      sampleReported(),
		"presence":      &Presence{Protocol: Protocol, Device: "d-1", Online: true, Time: t0},
		"desired_get":   &DesiredRequest{Protocol: Protocol, Device: "d-1", Have: 6},
		"telemetry":     &Telemetry{Protocol: Protocol, Device: "d-1", Seq: 3, Time: t0, Services: []ServiceTelemetry{{Name: "iris", Metrics: map[string]float64{"requests_total": 42}, Profile: json.RawMessage(`{"features":{}}`)}}},
		"telemetry_ack": &TelemetryAck{Protocol: Protocol, Device: "d-1", Seq: 3},
	}
	for name, v := range docs {
		t.Run(name, func(t *testing.T) {
			got, err := json.MarshalIndent(v, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", name+".golden.json")
			if *update {
				if err := os.WriteFile(path, append(got, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if !bytes.Equal(bytes.TrimSpace(want), got) {
				t.Errorf("wire format changed:\n%s\nwant\n%s", got, want)
			}
			// The golden decodes strictly into the same value.
			fresh := newOf(name)
			if err := Decode(want, MaxTelemetry, fresh, "d-1"); err != nil {
				t.Fatalf("golden does not decode: %v", err)
			}
		})
	}
}

func newOf(name string) interface{ validate(string) error } {
	switch name {
	case "desired":
		return &Desired{}
	case "reported":
		return &Reported{}
	case "presence":
		return &Presence{}
	case "desired_get":
		return &DesiredRequest{}
	case "telemetry":
		return &Telemetry{}
	}
	return &TelemetryAck{}
}

func TestDecodeDesiredRejects(t *testing.T) {
	good, _ := json.Marshal(sampleDesired())
	mutate := func(f func(d *Desired)) []byte {
		d := sampleDesired()
		f(d)
		b, _ := json.Marshal(d)
		return b
	}
	cases := []struct {
		name    string
		payload []byte
		device  string
		class   errclass.Class
		field   string
	}{
		{"good", good, "d-1", "", ""},
		{"other device", good, "d-2", errclass.InvalidArgument, "device"},
		{"oversize", append(good, bytes.Repeat([]byte(" "), MaxDocument)...), "d-1", errclass.TooLarge, ""},
		{"malformed", good[:len(good)/2], "d-1", errclass.InvalidArgument, ""},
		{"trailing", append(append([]byte{}, good...), []byte(" {}")...), "d-1", errclass.InvalidArgument, ""},
		{"unknown field", []byte(strings.Replace(string(good), `"version"`, `"evil":1,"version"`, 1)), "d-1", errclass.InvalidArgument, ""},
		{"protocol", mutate(func(d *Desired) { d.Protocol = 2 }), "d-1", errclass.InvalidArgument, "protocol"},
		{"version 0", mutate(func(d *Desired) { d.Version = 0 }), "d-1", errclass.InvalidArgument, "version"},
		{"image by tag", mutate(func(d *Desired) { d.Services[0].Image = "reg/acme/iris:latest" }), "d-1", errclass.InvalidArgument, "services[0].image"},
		{"bad name", mutate(func(d *Desired) { d.Services[0].Name = "../etc" }), "d-1", errclass.InvalidArgument, "services[0].name"},
		{"duplicate", mutate(func(d *Desired) { d.Services = append(d.Services, d.Services[0]) }), "d-1", errclass.InvalidArgument, "services[1].name"},
		{"port", mutate(func(d *Desired) { d.Services[0].Port = 70000 }), "d-1", errclass.InvalidArgument, "services[0].port"},
		{"env key", mutate(func(d *Desired) { d.Services[0].Env = map[string]string{"A=B": "x"} }), "d-1", errclass.InvalidArgument, "services[0].env"},
		{"tiny memory", mutate(func(d *Desired) { d.Services[0].Resources.MemoryBytes = 1 }), "d-1", errclass.InvalidArgument, "services[0].resources.memoryBytes"},
		{"probe path", mutate(func(d *Desired) { d.Services[0].Health.Path = "http://x" }), "d-1", errclass.InvalidArgument, "services[0].health.path"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var d Desired
			err := Decode(c.payload, MaxDocument, &d, c.device)
			if c.class == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if errclass.ClassOf(err) != c.class || errclass.FieldOf(err) != c.field {
				t.Errorf("err = %v (class %s field %q), want class %s field %q", err, errclass.ClassOf(err), errclass.FieldOf(err), c.class, c.field)
			}
		})
	}
}

func TestTopicsAndACL(t *testing.T) {
	cases := []struct {
		device, topic string
		pub, sub      bool
	}{
		{"d-1", Topic("d-1", KindReported), true, false},
		{"d-1", Topic("d-1", KindPresence), true, false},
		{"d-1", Topic("d-1", KindTelemetry), true, false},
		{"d-1", Topic("d-1", KindDesiredGet), true, false},
		{"d-1", Topic("d-1", KindDesired), false, true},
		{"d-1", Topic("d-1", KindTelemetryAck), false, true},
		{"d-1", Topic("d-2", KindReported), false, false},
		{"d-1", Topic("d-2", KindDesired), false, false},
		{"d-1", Filter(KindDesired), false, false},
		{"d-1", TopicRoot + "/#", false, false},
		{"d-1", TopicRoot + "/d-1/#", false, false},
		{"d-1", TopicRoot + "/d-1/desired/extra", false, false},
		{"d-1", "other/topic", false, false},
		{"d-1", TopicRoot + "/D-1/reported", false, false},
	}
	for _, c := range cases {
		if got := DeviceMayPublish(c.device, c.topic); got != c.pub {
			t.Errorf("DeviceMayPublish(%s, %s) = %v", c.device, c.topic, got)
		}
		if got := DeviceMaySubscribe(c.device, c.topic); got != c.sub {
			t.Errorf("DeviceMaySubscribe(%s, %s) = %v", c.device, c.topic, got)
		}
	}
	id, k, err := ParseTopic(Topic("d-9", KindTelemetryAck))
	if err != nil || id != "d-9" || k != KindTelemetryAck {
		t.Errorf("ParseTopic = %q %q %v", id, k, err)
	}
}

func TestWithDefaults(t *testing.T) {
	s := ServiceSpec{Name: "iris"}.WithDefaults()
	if s.Model != "iris" || s.Port != 8080 || s.Health.Path != "/healthz" || s.Health.FailureThreshold != 3 {
		t.Errorf("defaults = %+v", s)
	}
}

func FuzzDecodeDesired(f *testing.F) {
	good, _ := json.Marshal(sampleDesired())
	f.Add(good)
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"protocol":1,"device":"d-1","version":1,"services":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var d Desired
		if err := Decode(b, MaxDocument, &d, "d-1"); err != nil {
			return
		}
		// Whatever decodes must re-encode and decode to the same.
		again, err := Encode(&d)
		if err != nil {
			t.Fatal(err)
		}
		var d2 Desired
		if err := Decode(again, MaxDocument, &d2, "d-1"); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
	})
}

func FuzzDecodeReported(f *testing.F) {
	good, _ := json.Marshal(sampleReported())
	f.Add(good)
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Reported
		_ = Decode(b, MaxDocument, &r, "")
	})
}

func FuzzParseTopic(f *testing.F) {
	f.Add(Topic("d-1", KindDesired))
	f.Add("mlfleet/v1/devices//reported")
	f.Fuzz(func(t *testing.T, topic string) {
		id, k, err := ParseTopic(topic)
		if err == nil && Topic(id, k) != topic {
			t.Fatalf("ParseTopic(%q) = %q %q, which is a different topic", topic, id, k)
		}
	})
}
