package cli

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/mlfleet/mlfleet/cloud"
	"github.com/mlfleet/mlfleet/shared/errclass"
)

func TestParseBatch(t *testing.T) {
	tests := []struct {
		in   string
		want cloud.BatchSpec
		ok   bool
	}{
		{"10%", cloud.BatchSpec{Percent: 10}, true},
		{"12.5%", cloud.BatchSpec{Percent: 12.5}, true},
		{"100%", cloud.BatchSpec{Percent: 100}, true},
		{"5", cloud.BatchSpec{Count: 5}, true},
		{"1", cloud.BatchSpec{Count: 1}, true},
		{"0", cloud.BatchSpec{}, false},
		{"-3", cloud.BatchSpec{}, false},
		{"05", cloud.BatchSpec{}, false},
		{"0%", cloud.BatchSpec{}, false},
		{"101%", cloud.BatchSpec{}, false},
		{"-5%", cloud.BatchSpec{}, false},
		{"%", cloud.BatchSpec{}, false},
		{"NaN%", cloud.BatchSpec{}, false},
		{"Inf%", cloud.BatchSpec{}, false},
		{"1e1%", cloud.BatchSpec{}, false},
		{"0x10", cloud.BatchSpec{}, false},
		{"ten", cloud.BatchSpec{}, false},
		{"", cloud.BatchSpec{}, false},
		{"5 %", cloud.BatchSpec{}, false},
		{"99999999999999999999", cloud.BatchSpec{}, false},
	}
	for _, tt := range tests {
		got, err := parseBatch(tt.in)
		if tt.ok != (err == nil) || got != tt.want {
			t.Errorf("parseBatch(%q) = %+v, %v; want %+v ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
		if err != nil && (errclass.FieldOf(err) != "batch" || ExitCode(err) != ExitUsage || !strings.Contains(err.Error(), "--batch")) {
			t.Errorf("parseBatch(%q) error %v does not name --batch as bad usage", tt.in, err)
		}
	}
}

func TestRolloutFlagsSpec(t *testing.T) {
	tests := []struct {
		args      []string
		want      string // fmt of the spec
		set       bool
		wantField string
	}{
		{nil, "{Batches:[] SuccessThreshold:0 SoakSeconds:0 DeviceTimeoutSeconds:0 ErrorThreshold:0 MaxUnavailable:0 SLO:none}", false, ""},
		{[]string{"--batch", "10%", "--batch", "5", "--success-threshold", "0.9", "--soak", "5m", "--device-timeout", "10m",
			"--error-threshold", "0.2", "--max-unavailable", "2"},
			"{Batches:[{Count:0 Percent:10} {Count:5 Percent:0}] SuccessThreshold:0.9 SoakSeconds:300 DeviceTimeoutSeconds:600 ErrorThreshold:0.2 MaxUnavailable:2 SLO:none}", true, ""},
		{[]string{"--soak", "1500ms"}, "{Batches:[] SuccessThreshold:0 SoakSeconds:2 DeviceTimeoutSeconds:0 ErrorThreshold:0 MaxUnavailable:0 SLO:none}", true, ""},
		{[]string{"--batch", "x"}, "", true, "batch"},
		{[]string{"--success-threshold", "1.5"}, "", true, "success-threshold"},
		{[]string{"--success-threshold", "0"}, "", true, "success-threshold"},
		{[]string{"--error-threshold", "1"}, "", true, "error-threshold"},
		{[]string{"--max-unavailable", "-1"}, "", true, "max-unavailable"},
		{[]string{"--soak", "-1s"}, "", true, "soak"},
		{[]string{"--device-timeout", "500ms"}, "", true, "device-timeout"},
		{[]string{"--device-timeout", "200h"}, "", true, "device-timeout"},
		{[]string{"--max-error-rate", "1"}, "", true, "max-error-rate"},
		{[]string{"--max-error-rate", "-0.1"}, "", true, "max-error-rate"},
		{[]string{"--max-error-rate", "NaN"}, "", true, "max-error-rate"},
		{[]string{"--max-p99-ms", "0"}, "", true, "max-p99-ms"},
		{[]string{"--max-p99-ms", "5e6"}, "", true, "max-p99-ms"},
	}
	for _, tt := range tests {
		var rf rolloutFlags
		cmd := &cobra.Command{Use: "x"}
		rf.add(cmd)
		if err := cmd.ParseFlags(tt.args); err != nil {
			t.Fatal(err)
		}
		spec, set, err := rf.spec(cmd)
		if tt.wantField != "" {
			if errclass.FieldOf(err) != tt.wantField || ExitCode(err) != ExitUsage {
				t.Errorf("%v: err %v, want field %q", tt.args, err, tt.wantField)
			}
			continue
		}
		if spec.Batches == nil {
			spec.Batches = []cloud.BatchSpec{}
		}
		if got := fmt.Sprintf("%+v", spec); err != nil || got != tt.want || set != tt.set {
			t.Errorf("%v: %s set=%v, %v; want %s set=%v", tt.args, got, set, err, tt.want, tt.set)
		}
	}
}

func TestRolloutFlagsSLO(t *testing.T) {
	tests := []struct {
		args []string
		want string // the gate as shown, "none" when not set
	}{
		{nil, "none"},
		{[]string{"--soak", "1m"}, "none"},
		{[]string{"--max-error-rate", "0.05"}, "error rate <= 0.05"},
		{[]string{"--max-error-rate", "0"}, "error rate <= 0"},
		{[]string{"--max-p99-ms", "100"}, "p99 <= 100 ms"},
		{[]string{"--max-error-rate", "0.05", "--max-p99-ms", "250"}, "error rate <= 0.05, p99 <= 250 ms"},
	}
	for _, tt := range tests {
		var rf rolloutFlags
		cmd := &cobra.Command{Use: "x"}
		rf.add(cmd)
		if err := cmd.ParseFlags(tt.args); err != nil {
			t.Fatal(err)
		}
		spec, set, err := rf.spec(cmd)
		if err != nil || spec.SLO.String() != tt.want || set != (len(tt.args) > 0) {
			t.Errorf("%v: slo %s set=%v, %v; want %s", tt.args, spec.SLO, set, err, tt.want)
		}
	}
}

func TestParseEnvVars(t *testing.T) {
	if m, err := parseEnvVars([]string{"A=1", "B=x=y", "C="}); err != nil || len(m) != 3 || m["B"] != "x=y" || m["C"] != "" {
		t.Errorf("parseEnvVars = %v, %v", m, err)
	}
	for _, bad := range [][]string{{"A"}, {"=1"}, {"A=1", "A=2"}} {
		if _, err := parseEnvVars(bad); errclass.FieldOf(err) != "env" || ExitCode(err) != ExitUsage {
			t.Errorf("parseEnvVars(%q) = %v", bad, err)
		}
	}
}

// sampleRollout is a rollout in its second of three batches with a failure.
func sampleRollout(t0 time.Time) *cloud.Rollout {
	return &cloud.Rollout{
		Meta: cloud.Meta{Path: "/subscriptions/acme/accounts/models/services/iris/rollouts/000002", CreatedAt: t0, UpdatedAt: t0.Add(time.Minute)},
		ID:   "000002", Service: "iris", From: "iris:1", To: "iris:2", State: cloud.RolloutRunning, Batch: 1, BatchSize: []int{1, 2, 2},
		Devices: map[string]cloud.DeviceOutcome{
			"d-a": {Batch: 0, State: cloud.DeviceHealthy, Since: t0},
			"d-b": {Batch: 1, State: cloud.DeviceUpdating, Since: t0.Add(30 * time.Second)},
			"d-c": {Batch: 1, State: cloud.DeviceFailed, Reason: "health probe failed\n3 times", Since: t0.Add(40 * time.Second)},
			"d-d": {Batch: 2, State: cloud.DevicePending, Since: t0},
			"d-e": {Batch: 2, State: cloud.DevicePending, Since: t0},
		},
		Counts: map[string]int{cloud.DeviceHealthy: 1, cloud.DeviceUpdating: 1, cloud.DeviceFailed: 1, cloud.DevicePending: 2},
	}
}

// TestDeployTablesGolden pins the output of images, environments,
// services, rollouts and the --watch rendering.
func TestDeployTablesGolden(t *testing.T) {
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	meta := func(p string) cloud.Meta {
		return cloud.Meta{Path: p, CreatedAt: t0, UpdatedAt: t0, CreatedBy: "admin"}
	}
	var b bytes.Buffer
	check := func(name string, err error) {
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	dg := "sha256:772a240d934b32bce2b003d607c83ab7114cfcdda3c2f32ffca8e978b4e8ab69"
	img := cloud.Image{Meta: meta("/subscriptions/acme/accounts/models/images/iris/versions/2"), Subscription: "acme", Account: "models",
		Name: "iris", Version: 2, Manifest: "iris:1", ManifestDigest: dg, Digest: dg, Reference: "cloud:8480/acme/models/iris@" + dg, Tag: "v2",
		Platforms: []string{"linux/amd64", "linux/arm/v7", "linux/arm64"}, BytesUploaded: 5120,
		Layers: []cloud.ImageLayer{{Platform: "linux/amd64", Kind: "scorer", Digest: dg, Size: 4000000}, {Platform: "linux/amd64", Kind: "model", Digest: dg, Size: 1200}}}
	fmt.Fprintln(&b, "# images")
	check("images", imageTable.print(&b, formatTable, []cloud.Image{img, {Meta: meta("/i"), Name: "bare", Version: 1}}, false))
	fmt.Fprintln(&b, "# image details")
	check("image details", printImageDetails(&b, &img))
	fmt.Fprintln(&b, "# environments")
	check("envs", environmentTable.print(&b, formatTable, []cloud.Environment{
		{Meta: meta("/e1"), Name: "paris", Selector: map[string]string{"site": "paris", "tier": "edge"}, Description: "shops"},
		{Meta: meta("/e2"), Name: "bench", Device: "d-3f2a9c0b1e4d"},
	}, false))
	svc := cloud.ScoringService{Meta: meta("/subscriptions/acme/accounts/models/services/iris"), Name: "iris", Environment: "paris", Image: "iris:1",
		ImageReference: img.Reference, Previous: "iris:0", Port: 8080, Env: map[string]string{"LOG": "debug"}, Rollout: "000002"}
	fmt.Fprintln(&b, "# services")
	check("services", serviceTable.print(&b, formatTable, []cloud.ScoringService{svc, {Meta: meta("/s"), Name: "new", Environment: "bench"}}, false))
	fmt.Fprintln(&b, "# service details")
	check("service details", printServiceDetails(&b, &svc))
	ro := sampleRollout(t0)
	fmt.Fprintln(&b, "# rollouts")
	check("rollouts", rolloutTable.print(&b, formatTable, []cloud.Rollout{*ro}, false))
	fmt.Fprintln(&b, "# rollout status")
	check("status", printRolloutStatus(&b, formatTable, ro))
	done := *ro
	done.State, done.Message, done.Batch = cloud.RolloutSucceeded, "", 3
	done.Devices = map[string]cloud.DeviceOutcome{"d-a": {State: cloud.DeviceHealthy, Since: t0}}
	done.Counts = map[string]int{cloud.DeviceHealthy: 1}
	fmt.Fprintln(&b, "# rollout status, all healthy")
	check("status done", printRolloutStatus(&b, formatTable, &done))
	reverted := *sampleRollout(t0)
	reverted.State, reverted.Message = cloud.RolloutReverted, "1 of 5 devices failed (error threshold 0%): reverting updated devices"
	reverted.Devices["d-c"] = cloud.DeviceOutcome{Batch: 1, State: cloud.DeviceReverted, Reason: "health probe failed", Since: t0.Add(time.Minute)}
	reverted.Devices["d-b"] = cloud.DeviceOutcome{Batch: 1, State: cloud.DeviceReverted, Since: t0.Add(time.Minute)}
	reverted.Counts = map[string]int{cloud.DeviceHealthy: 1, cloud.DeviceReverted: 2, cloud.DevicePending: 2}
	fmt.Fprintln(&b, "# rollout status, reverted")
	check("status reverted", printRolloutStatus(&b, formatTable, &reverted))
	rate, p99 := 0.05, 100.0
	gated := *sampleRollout(t0)
	gated.Spec.SLO = &cloud.SLOGate{MaxErrorRate: &rate, MaxP99Ms: &p99}
	gated.State, gated.Message = cloud.RolloutReverted, "1 of 5 devices failed (error threshold 0%): reverting updated devices"
	gated.Devices["d-c"] = cloud.DeviceOutcome{Batch: 1, State: cloud.DeviceReverted, Reason: "slo: error rate 0.31 over 0.05 (155 of 500 requests)", Since: t0.Add(time.Minute)}
	gated.Devices["d-b"] = cloud.DeviceOutcome{Batch: 1, State: cloud.DeviceReverted, Since: t0.Add(time.Minute)}
	gated.Counts = map[string]int{cloud.DeviceHealthy: 1, cloud.DeviceReverted: 2, cloud.DevicePending: 2}
	fmt.Fprintln(&b, "# rollout status, SLO gate")
	check("status slo", printRolloutStatus(&b, formatTable, &gated))

	// --watch, printed: each changed line once.
	fmt.Fprintln(&b, "# watch, plain")
	plain := &watcher{w: &b}
	plain.show(ro)
	plain.show(ro)
	plain.show(&reverted)
	fmt.Fprintln(&b, "# watch, terminal")
	term := &watcher{w: &b, terminal: true}
	term.show(ro)
	term.show(&reverted)
	if err := rolloutOutcome(&reverted); err == nil || ExitCode(err) != ExitFailure {
		t.Errorf("outcome of a reverted rollout: %v", err)
	}
	if err := rolloutOutcome(&done); err != nil {
		t.Errorf("outcome of a succeeded rollout: %v", err)
	}

	checkGolden(t, "deploy.golden", b.Bytes())
}

func FuzzParseBatch(f *testing.F) {
	for _, s := range []string{"10%", "5", "0", "100%", "100.5%", "1e2%", "%", "", "-1", "0x1", "NaN%", "007", "2.%", ".5%"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := parseBatch(s)
		if err != nil {
			if ExitCode(err) != ExitUsage || errclass.FieldOf(err) != "batch" {
				t.Fatalf("parseBatch(%q): %v is not bad usage naming --batch", s, err)
			}
			return
		}
		// Exactly one of count or percent, in range: what the cloud accepts.
		if (b.Count > 0) == (b.Percent > 0) || b.Count < 0 || b.Percent < 0 || b.Percent > 100 {
			t.Fatalf("parseBatch(%q) = %+v", s, b)
		}
	})
}

func FuzzParseEnvVars(f *testing.F) {
	f.Add("A=1", "B=2")
	f.Add("A=1", "A=2")
	f.Add("=", "")
	f.Fuzz(func(t *testing.T, x, y string) {
		m, err := parseEnvVars([]string{x, y})
		if err != nil {
			if ExitCode(err) != ExitUsage || errclass.FieldOf(err) != "env" {
				t.Fatalf("parseEnvVars: %v", err)
			}
			return
		}
		if len(m) != 2 || m[""] != "" {
			t.Fatalf("parseEnvVars(%q, %q) = %v", x, y, m)
		}
	})
}
