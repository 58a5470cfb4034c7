package examples

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mlfleet/mlfleet/cloud"
	"github.com/mlfleet/mlfleet/edge/sim"
)

// BenchmarkFleetRollout measures the rollout engine at fleet scale: the real
// mlfleet-cloud process (embedded broker and registry) and N simulated
// devices speaking the real MQTT protocol (in this process). For each N it
// reports the time from rollout start to every device converged, with one
// batch of 100% and with five batches of 20%, the cloud's peak RSS and CPU
// seconds, and MQTT messages per device.
//
//	go test -run '^$' -bench FleetRollout -benchtime 1x -timeout 60m ./examples/
//	MLFLEET_SCALE_SIZES=1000 go test ...   # one size only
func BenchmarkFleetRollout(b *testing.B) {
	sizes := []int{1000, 5000, 10000}
	if s := os.Getenv("MLFLEET_SCALE_SIZES"); s != "" {
		sizes = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil {
				b.Fatalf("MLFLEET_SCALE_SIZES: %v", err)
			}
			sizes = append(sizes, n)
		}
	}
	for _, n := range sizes {
		b.Run(fmt.Sprintf("devices=%d", n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				scaleRun(b, n)
			}
		})
	}
}

// cloudProcess is mlfleet-cloud running as a child process.
type cloudProcess struct {
	tb        testing.TB
	cmd       *exec.Cmd
	url, mqtt string
	token     string
}

var logURL = regexp.MustCompile(`url=(http://\S+) mqtt=(tcp://\S+)`)

func startCloudProcess(tb testing.TB) *cloudProcess {
	tb.Helper()
	dir := tb.TempDir()
	bin := filepath.Join(dir, "mlfleet-cloud")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/mlfleet/mlfleet/cmd/mlfleet-cloud").CombinedOutput(); err != nil {
		tb.Fatalf("build mlfleet-cloud: %v\n%s", err, out)
	}
	if err := os.Symlink(scorers(tb), filepath.Join(dir, "scorers")); err != nil {
		tb.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	if out, err := exec.Command(bin, "init", "--data-dir", data).CombinedOutput(); err != nil {
		tb.Fatalf("init: %v\n%s", err, out)
	}
	tok, _ := os.ReadFile(filepath.Join(data, "admin.token"))
	cmd := exec.Command(bin, "serve", "--data-dir", data, "--addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "MLFLEET_PPROF_ADDR="+os.Getenv("MLFLEET_BENCH_PPROF"))
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	found := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := logURL.FindStringSubmatch(sc.Text()); m != nil {
				found <- m
			}
		}
	}()
	select {
	case m := <-found:
		return &cloudProcess{tb: tb, cmd: cmd, url: m[1], mqtt: m[2], token: strings.TrimSpace(string(tok))}
	case <-time.After(time.Minute):
		tb.Fatal("mlfleet-cloud did not start")
	}
	return nil
}

func (c *cloudProcess) call(method, path, ctype string, body []byte, want int, out any) {
	c.tb.Helper()
	req, _ := http.NewRequest(method, c.url+path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", ctype)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		c.tb.Fatalf("%s %s = %d: %s", method, path, resp.StatusCode, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			c.tb.Fatal(err)
		}
	}
}

// procStat returns a process's CPU seconds (user+system) and peak RSS in MB.
func procStat(tb testing.TB, pid int) (float64, float64) {
	tb.Helper()
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+2:]))
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	var hwm float64
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.Fields(rest)[0], 64)
			hwm = kb / 1024
		}
	}
	return (ut + st) / 100, hwm // clock ticks are 1/100 s on Linux
}

func scaleRun(b *testing.B, n int) {
	b.StopTimer()
	c := startCloudProcess(b)
	c.call("POST", "/api/v1/subscriptions", "application/json", []byte(`{"name":"demo"}`), 201, nil)
	c.call("POST", "/api/v1/subscriptions/demo/accounts", "application/json", []byte(`{"name":"models","kind":"modelmanagement"}`), 201, nil)
	for v, file := range []string{"testdata/iris_logreg.onnx", "testdata/iris_mlp.onnx"} {
		model, _ := os.ReadFile(file)
		c.call("POST", acctPath+"/models/iris/versions", "application/octet-stream", model, 201, nil)
		c.call("POST", acctPath+"/manifests", "application/json", []byte(fmt.Sprintf(`{"apiVersion":"mlfleet.io/v1","name":"iris","runtime":"onnx","models":[{"name":"iris","version":%d}]}`, v+1)), 201, nil)
		var op cloud.Operation
		c.call("POST", acctPath+"/images", "application/json", []byte(fmt.Sprintf(`{"name":"iris","manifest":"iris:%d"}`, v+1)), 202, &op)
		for !op.Done {
			time.Sleep(100 * time.Millisecond)
			c.call("GET", acctPath+"/operations/"+op.ID, "", nil, 200, &op)
		}
		if op.Status != cloud.OpSucceeded {
			b.Fatalf("image build: %+v", op.Error)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	setup := time.Now()
	tokens, err := sim.CloudTokens(c.url, c.token, "demo", "models", map[string]string{"fleet": "scale"})
	if err != nil {
		b.Fatal(err)
	}
	ids, err := sim.Enroll(ctx, c.url, tokens, n, 16)
	if err != nil {
		b.Fatal(err)
	}
	fleet, err := sim.New(sim.Config{MQTTURL: c.mqtt, Devices: ids, PullTime: 200 * time.Millisecond, StartTime: 200 * time.Millisecond,
		ConnectRate: 2000, MaxConnecting: 256, Seed: 1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- fleet.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitScale(b, 10*time.Minute, func() bool { return fleet.Stats().Online == n })
	b.Logf("%d devices enrolled and online in %.1fs", n, time.Since(setup).Seconds())
	c.call("POST", acctPath+"/environments", "application/json", []byte(`{"name":"scale","selector":{"fleet":"scale"}}`), 201, nil)

	converge := func(what string, start func() string) float64 {
		cpu0, _ := procStat(b, c.cmd.Process.Pid)
		st0 := fleet.Stats()
		t0 := time.Now()
		id := start()
		var ro cloud.Rollout
		waitScale(b, 20*time.Minute, func() bool {
			c.call("GET", acctPath+"/services/iris/rollouts/"+id, "", nil, 200, &ro)
			if ro.State != cloud.RolloutRunning && ro.State != cloud.RolloutSucceeded {
				b.Fatalf("%s: rollout %s: %s", what, ro.State, ro.Message)
			}
			return ro.State == cloud.RolloutSucceeded
		})
		secs := time.Since(t0).Seconds()
		cpu1, hwm := procStat(b, c.cmd.Process.Pid)
		st1 := fleet.Stats()
		msgs := float64(st1.Sent+st1.Received-st0.Sent-st0.Received) / float64(n)
		status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.cmd.Process.Pid))
		var rss []string
		for _, line := range strings.Split(string(status), "\n") {
			if strings.HasPrefix(line, "Rss") {
				rss = append(rss, strings.Join(strings.Fields(line), " "))
			}
		}
		b.Logf("%d devices, %s: converged in %.1fs; cloud CPU %.1fs, peak RSS %.0f MB (now: %s); %.1f MQTT messages per device",
			n, what, secs, cpu1-cpu0, hwm, strings.Join(rss, ", "), msgs)
		b.ReportMetric(cpu1-cpu0, strings.ReplaceAll(what, " ", "-")+"-cloud-cpu-s")
		b.ReportMetric(hwm, "cloud-peak-RSS-MB")
		b.ReportMetric(msgs, strings.ReplaceAll(what, " ", "-")+"-msgs/device")
		return secs
	}
	b.StartTimer()
	one := converge("one batch", func() string {
		var out struct {
			Rollout cloud.Rollout `json:"rollout"`
		}
		c.call("POST", acctPath+"/services", "application/json", []byte(`{"name":"iris","environment":"scale","image":"iris:1","rollout":{"deviceTimeoutSeconds":600}}`), 201, &out)
		return out.Rollout.ID
	})
	five := converge("five batches", func() string {
		var ro cloud.Rollout
		c.call("POST", acctPath+"/services/iris/rollouts", "application/json",
			[]byte(`{"image":"iris:2","batches":[{"percent":20},{"percent":20},{"percent":20},{"percent":20}],"deviceTimeoutSeconds":600}`), 201, &ro)
		return ro.ID
	})
	b.StopTimer()
	b.ReportMetric(one, "one-batch-converge-s")
	b.ReportMetric(five, "five-batches-converge-s")
}

func waitScale(tb testing.TB, within time.Duration, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s", within)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
