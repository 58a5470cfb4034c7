package examples

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mlfleet/mlfleet/shared/twin"
)

// The edge figures: the real mlfleet-edge binary on the real containerd,
// with images built by the real cloud. Goals (issue 5): stripped binary
// < 35 MB; idle RSS with two services < 25 MB; desired state to answering
// < 1 s with the image cached; gateway throughput >= 0.85x of calling the
// scorer directly at 16 concurrent clients.
//
//	go test -run '^$' -bench BenchmarkEdge ./examples       (make bench)
//	go test -run TestEdgeFigures -v ./examples              (the same, logged)

// edgeFixture is a cloud with three images and a device running two
// services (iris: v1, iris2: v2).
type edgeFixture struct {
	c       *edgeCloud
	p       *edgeProc
	v1, v2  twin.ServiceSpec
	big     string // an image with a 20 MB model layer no one has pulled
	running []twin.ServiceSpec
}

const padBytes = 20 << 20

func newEdgeFixture(tb testing.TB) *edgeFixture {
	tb.Helper()
	c := newEdgeCloud(tb)
	v1 := c.image("iris", "testdata/iris_logreg.onnx")
	v2 := c.image("iris", "testdata/iris_mlp.onnx")
	big := c.build("irisbig", paddedModel(tb, padBytes), "")
	p := enrollEdge(tb, c, socketFor(tb))
	p.start()
	f := &edgeFixture{c: c, p: p, big: big.Reference,
		v1: twin.ServiceSpec{Name: "iris", Image: v1.Reference}, v2: twin.ServiceSpec{Name: "iris2", Image: v2.Reference}}
	f.running = []twin.ServiceSpec{f.v1, f.v2}
	c.setDesired(p.id, f.running...)
	for _, s := range f.running {
		waitFor(tb, 3*time.Minute, s.Name+" serving", func() bool { return scoreURL(f.serviceURL(s.Name)) == nil })
	}
	return f
}

func (f *edgeFixture) serviceURL(name string) string { return f.p.gw + "/services/" + name + "/score" }

// binaryMB is the size of the stripped mlfleet-edge binary.
func (f *edgeFixture) binaryMB(tb testing.TB) float64 {
	tb.Helper()
	st, err := os.Stat(f.p.bin)
	if err != nil {
		tb.Fatal(err)
	}
	return float64(st.Size()) / (1 << 20)
}

// idleMemoryMB samples the daemon's VmRSS for a while with no requests and
// returns the last VmRSS and the VmHWM (peak) in MiB.
func (f *edgeFixture) idleMemoryMB(tb testing.TB, settle time.Duration) (rss, hwm float64) {
	tb.Helper()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	end := time.Now().Add(settle)
	for {
		r, h, err := procStatus(f.p.cmd.Process.Pid)
		if err != nil {
			tb.Fatal(err)
		}
		rss, hwm = float64(r)/(1<<20), float64(h)/(1<<20)
		if time.Now().After(end) {
			return rss, hwm
		}
		<-tick.C // sampling, not waiting for a condition
	}
}

// deploy adds service name running image beside the running services and
// returns the time from publishing the desired state to the service's
// first good answer through the gateway; then it removes the service
// again (untimed) and waits until the gateway stops routing it.
func (f *edgeFixture) deploy(tb testing.TB, name, image string) time.Duration {
	tb.Helper()
	start := time.Now()
	f.c.setDesired(f.p.id, append(append([]twin.ServiceSpec{}, f.running...), twin.ServiceSpec{Name: name, Image: image})...)
	waitFor(tb, 3*time.Minute, name+" answering", func() bool { return scoreURL(f.serviceURL(name)) == nil })
	took := time.Since(start)
	f.c.setDesired(f.p.id, f.running...)
	waitFor(tb, time.Minute, name+" removed", func() bool {
		resp, err := httpc.Post(f.serviceURL(name), "application/json", strings.NewReader(irisRow))
		if err != nil {
			return false
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	return took
}

// directURL is the iris scorer container's own /score.
func (f *edgeFixture) directURL(tb testing.TB) string {
	tb.Helper()
	insts := runningInstances(tb, ctrClient(tb, f.p.sock), f.p.ns, "iris")
	if len(insts) != 1 {
		tb.Fatalf("%d running iris instances, want 1", len(insts))
	}
	return "http://127.0.0.1:" + strconv.Itoa(insts[0].port) + "/score"
}

// hammer posts the iris rows to u from clients goroutines until n requests
// are done (n > 0) or for d; it returns requests per second.
func hammer(tb testing.TB, u string, clients int, n int64, d time.Duration) float64 {
	tb.Helper()
	tr := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: clients, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	body := []byte(irisRow)
	var done, failed atomic.Int64
	var firstErr sync.Once
	var errMsg string
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for {
				if n > 0 && done.Add(1) > n {
					return
				}
				if n <= 0 {
					if time.Now().After(deadline) {
						return
					}
					done.Add(1)
				}
				resp, err := client.Post(u, "application/json", strings.NewReader(string(body)))
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					failed.Add(1)
					firstErr.Do(func() { errMsg = err.Error() })
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	total := done.Load()
	if n > 0 {
		total = n
	}
	if failed.Load() > 0 {
		tb.Fatalf("%s: %d of %d requests failed (first: %s)", u, failed.Load(), total, errMsg)
	}
	return float64(total) / elapsed.Seconds()
}

// BenchmarkEdge reports the edge figures as benchmark metrics.
func BenchmarkEdge(b *testing.B) {
	f := newEdgeFixture(b)
	b.Run("BinarySize", func(b *testing.B) {
		for b.Loop() {
		}
		b.ReportMetric(f.binaryMB(b), "MB")
	})
	b.Run("IdleRSS2Services", func(b *testing.B) {
		for b.Loop() {
		}
		rss, hwm := f.idleMemoryMB(b, 2*time.Second)
		b.ReportMetric(rss, "MB-rss")
		b.ReportMetric(hwm, "MB-hwm")
	})
	b.Run("DeployCached", func(b *testing.B) {
		var total time.Duration
		n := 0
		for b.Loop() {
			total += f.deploy(b, "cached", f.v1.Image)
			n++
		}
		b.ReportMetric(total.Seconds()/float64(n), "s/deploy")
	})
	b.Run("DeployPull20MB", func(b *testing.B) {
		var total time.Duration
		n := 0
		for b.Loop() {
			total += f.deploy(b, "big", f.big) // removed after: GC drops the image, the next loop pulls again
			n++
		}
		b.ReportMetric(total.Seconds()/float64(n), "s/deploy")
	})
	direct, gw := f.directURL(b), f.serviceURL("iris")
	var directRate float64
	b.Run("ScoreDirect16", func(b *testing.B) {
		directRate = hammer(b, direct, 16, int64(b.N), 0)
		b.ReportMetric(directRate, "req/s")
	})
	b.Run("ScoreGateway16", func(b *testing.B) {
		rate := hammer(b, gw, 16, int64(b.N), 0)
		b.ReportMetric(rate, "req/s")
		if directRate > 0 {
			b.ReportMetric(rate/directRate, "x-direct")
		}
	})
}

// BenchmarkEdgeFigures logs the edge figures (run with -benchtime 1x -v).
// Goals are checked by reading, not asserted.
func BenchmarkEdgeFigures(t *testing.B) {
	f := newEdgeFixture(t)
	t.Logf("stripped mlfleet-edge binary: %.1f MB (goal < 35 MB)", f.binaryMB(t))
	rss, hwm := f.idleMemoryMB(t, 3*time.Second)
	t.Logf("idle memory with two services: VmRSS %.1f MB, VmHWM %.1f MB (goal < 25 MB)", rss, hwm)
	for i := range 3 {
		t.Logf("desired state to answering, image cached: %.2fs (goal < 1 s) [run %d]", f.deploy(t, "cached", f.v1.Image).Seconds(), i+1)
	}
	for i := range 2 {
		t.Logf("desired state to answering, %d MB pull from the local registry: %.2fs [run %d]", padBytes>>20, f.deploy(t, "big", f.big).Seconds(), i+1)
	}
	direct, gw := f.directURL(t), f.serviceURL("iris")
	hammer(t, gw, 16, 0, time.Second) // warm both paths
	hammer(t, direct, 16, 0, time.Second)
	for i := range 2 {
		d := hammer(t, direct, 16, 0, 3*time.Second)
		g := hammer(t, gw, 16, 0, 3*time.Second)
		t.Logf("16 clients: direct %.0f req/s, through the gateway %.0f req/s = %.2fx (goal >= 0.85x) [run %d]", d, g, g/d, i+1)
	}
	if rss2, hwm2 := f.idleMemoryMB(t, 0); true {
		t.Logf("after the load: VmRSS %.1f MB, VmHWM %.1f MB", rss2, hwm2)
	}
}
