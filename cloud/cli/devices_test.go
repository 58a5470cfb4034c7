package cli

import (
	"strings"
	"testing"

	"github.com/mlfleet/mlfleet/cloud"
	"github.com/mlfleet/mlfleet/shared/errclass"
	"github.com/mlfleet/mlfleet/shared/twin"
)

const goodImage = "cloud:8480/acme/models/iris@sha256:772a240d934b32bce2b003d607c83ab7114cfcdda3c2f32ffca8e978b4e8ab69"

func TestParseServices(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		wantNames string
		wantField string // "" when valid, "*" for an error naming any field
	}{
		{"array", `[{"name":"iris","image":"` + goodImage + `","port":8080}]`, "iris", ""},
		{"object", `{"services":[{"name":"iris","image":"` + goodImage + `"},{"name":"churn","image":"` + goodImage + `"}]}`, "iris,churn", ""},
		{"empty array stops all", ` [] `, "", ""},
		{"empty object list", `{"services":[]}`, "", ""},
		{"null array", `null`, "", "file"},
		{"object without services", `{}`, "", "services"},
		{"unknown field in spec", `[{"name":"iris","image":"` + goodImage + `","colour":"red"}]`, "", "*"},
		{"unknown top-level field", `{"services":[],"version":3}`, "", "*"},
		{"image not pinned", `[{"name":"iris","image":"iris:latest"}]`, "", "services[0].image"},
		{"bad name", `[{"name":"Iris","image":"` + goodImage + `"}]`, "", "services[0].name"},
		{"duplicate", `[{"name":"iris","image":"` + goodImage + `"},{"name":"iris","image":"` + goodImage + `"}]`, "", "services[1].name"},
		{"bad port", `[{"name":"iris","image":"` + goodImage + `","port":70000}]`, "", "services[0].port"},
		{"empty file", "  \n", "", "file"},
		{"not json", `name: iris`, "", "file"},
		{"trailing data", `[] []`, "", "*"},
		{"wrong type", `[{"name":1}]`, "", "*"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			specs, err := parseServices([]byte(tt.in))
			if tt.wantField != "" {
				if err == nil || ExitCode(err) != ExitUsage {
					t.Fatalf("parseServices(%s) = %v, %v; want invalid input", tt.in, specs, err)
				}
				if tt.wantField != "*" && errclass.FieldOf(err) != tt.wantField {
					t.Errorf("field = %q, want %q (%v)", errclass.FieldOf(err), tt.wantField, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, s := range specs {
				names = append(names, s.Name)
			}
			if got := strings.Join(names, ","); got != tt.wantNames || specs == nil {
				t.Errorf("names = %q (nil %v), want %q", got, specs == nil, tt.wantNames)
			}
		})
	}
	big := "[" + strings.Repeat(" ", maxServicesFile) + "]"
	if _, err := parseServices([]byte(big)); errclass.ClassOf(err) != errclass.TooLarge {
		t.Errorf("oversized file: %v", err)
	}
}

func TestParseLabels(t *testing.T) {
	tests := []struct {
		in      []string
		want    string
		wantErr bool
	}{
		{nil, "", false},
		{[]string{"site=paris", "arch=arm64", "empty="}, "arch=arm64,empty=,site=paris", false},
		{[]string{"site"}, "", true},
		{[]string{"=paris"}, "", true},
		{[]string{"a=1", "a=2"}, "", true},
	}
	for _, tt := range tests {
		m, err := parseLabels("--label", tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("parseLabels(%v) err = %v", tt.in, err)
			continue
		}
		if err != nil {
			if errclass.FieldOf(err) != "label" || ExitCode(err) != ExitUsage {
				t.Errorf("parseLabels(%v) err = %v: want invalid field label", tt.in, err)
			}
			continue
		}
		if got := sortedTags(m); got != tt.want {
			t.Errorf("parseLabels(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestShellQuote(t *testing.T) {
	tests := []struct{ in, want string }{
		{"http://127.0.0.1:8480", "http://127.0.0.1:8480"},
		{"mle_ab_cd", "mle_ab_cd"},
		{"", "''"},
		{"http://h/a b", "'http://h/a b'"},
		{"it's", `'it'\''s'`},
		{"$(rm -rf /)", "'$(rm -rf /)'"},
	}
	for _, tt := range tests {
		if got := shellQuote(tt.in); got != tt.want {
			t.Errorf("shellQuote(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func FuzzParseServices(f *testing.F) {
	f.Add([]byte(`[{"name":"iris","image":"` + goodImage + `"}]`))
	f.Add([]byte(`{"services":[{"name":"iris","image":"` + goodImage + `","env":{"A":"1"},"health":{"path":"/h"}}]}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`[{"name":"iris","image":"x"}]`))
	f.Add([]byte(`{"services":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		specs, err := parseServices(b)
		if err != nil {
			if c := ExitCode(err); c != ExitUsage {
				t.Fatalf("parseServices: %v exits %d, want 2", err, c)
			}
			return
		}
		if specs == nil {
			t.Fatal("nil services accepted")
		}
		// What parses is a desired state the device accepts.
		d := twin.Desired{Protocol: twin.Protocol, Device: "d-1", Version: 1, Services: specs}
		raw, err := twin.Encode(&d)
		if err != nil {
			t.Fatal(err)
		}
		var back twin.Desired
		if err := twin.Decode(raw, twin.MaxDocument, &back, "d-1"); err != nil {
			t.Fatalf("accepted services the device refuses: %v", err)
		}
	})
}

func FuzzParseLabels(f *testing.F) {
	f.Add("site=paris", "arch=arm64")
	f.Add("a=1", "a=2")
	f.Add("=", "novalue")
	f.Add("k=v=w", "k2=")
	f.Fuzz(func(t *testing.T, x, y string) {
		m, err := parseLabels("--label", []string{x, y})
		if err != nil {
			if ExitCode(err) != ExitUsage || errclass.FieldOf(err) != "label" {
				t.Fatalf("parseLabels: %v is not invalid input naming label", err)
			}
			return
		}
		if len(m) != 2 {
			t.Fatalf("parseLabels(%q, %q) = %v", x, y, m)
		}
		for k, v := range m {
			if k == "" || strings.Contains(k, "=") {
				t.Fatalf("bad key %q", k)
			}
			if x != k+"="+v && y != k+"="+v {
				t.Fatalf("label %q=%q not from the input", k, v)
			}
		}
	})
}

func TestServiceOnDevices(t *testing.T) {
	svc := &cloud.ScoringService{Name: "iris", Image: "iris:2", ImageReference: "r/iris@sha256:2", Previous: "iris:1", PreviousReference: "r/iris@sha256:1"}
	reported := func(image string, phase twin.Phase, healthy bool, reason string) *twin.Reported {
		return &twin.Reported{Services: []twin.ServiceStatus{
			{Name: "other", Image: "r/other@sha256:9", Phase: twin.Running, Healthy: true},
			{Name: "iris", Image: image, Phase: phase, Healthy: healthy, Reason: reason},
		}}
	}
	devs := []cloud.Device{
		{ID: "d-5", Online: true, Reported: reported("r/iris@sha256:2", twin.Running, true, "")},
		{ID: "d-4", Online: false, Reported: reported("r/iris@sha256:2", twin.Running, false, "")},
		{ID: "d-3", Online: true, Reported: reported("r/iris@sha256:1", twin.RolledBack, true, "v2 crashed at start")},
		{ID: "d-2", Online: true, Reported: reported("r/x@sha256:7", twin.Running, true, "")},
		{ID: "d-1", Online: false},
	}
	rows := serviceOnDevices(svc, devs)
	want := []struct{ device, version, table string }{
		{"d-1", "", "none"},
		{"d-2", "", "other: r/x@sha256:7"},
		{"d-3", "iris:1", "iris:1"},
		{"d-4", "iris:2", "iris:2"},
		{"d-5", "iris:2", "iris:2"},
	}
	for i, w := range want {
		if rows[i].Device != w.device || rows[i].Version != w.version || serviceDeviceTable.row(rows[i])[2] != w.table {
			t.Errorf("row %d = %+v (table %q), want %s %q %q", i, rows[i], serviceDeviceTable.row(rows[i])[2], w.device, w.version, w.table)
		}
	}
	if rows[2].Reason != "v2 crashed at start" || rows[2].Phase != twin.RolledBack {
		t.Errorf("d-3 = %+v", rows[2])
	}
	got := serviceDevicesSummary(svc, rows)
	if w := "\n5 device(s): 2 run iris:2 (1 healthy), 1 run the previous iris:1, 1 another image, 1 none; 2 offline."; got != w {
		t.Errorf("summary %q, want %q", got, w)
	}
}
