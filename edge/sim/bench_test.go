package sim

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/mlfleet/mlfleet/shared/twin"
)

// BenchmarkFleet1000 connects 1,000 simulated devices to an in-process
// broker, publishes a desired document to each, and waits until all report
// Running. It reports the memory the fleet holds per connected device
// (heap + stacks, measured with the devices online; the in-process broker's
// share for their sessions is included), goroutines per device, and the
// messages each device sent and received.
func BenchmarkFleet1000(b *testing.B) { benchFleet(b, 1000) }

// BenchmarkFleet10000 is the same at the scale the simulator is meant for.
func BenchmarkFleet10000(b *testing.B) { benchFleet(b, 10000) }

func benchFleet(b *testing.B, n int) {
	// The in-process broker holds the other end of every connection.
	if lim := openFileLimit(); lim != 0 && lim < uint64(2*n+200) {
		b.Skipf("%d devices with an in-process broker need %d open files; the limit is %d", n, 2*n+200, lim)
	}
	ids := identities(n)
	img := image('a')
	var mbPerDevice, goroutinesPerDevice, msgsPerDevice float64
	for b.Loop() {
		br := startBroker(b, false)
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		g0 := runtime.NumGoroutine()

		f, err := New(Config{MQTTURL: br.url(), Devices: ids, ConnectRate: 2000, MaxConnecting: 256,
			PullTime: 10 * time.Millisecond, PullJitter: 5 * time.Millisecond, StartTime: 10 * time.Millisecond, Seed: 1})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- f.Run(ctx) }()
		eventually(b, time.Minute, func() string {
			s := f.Stats()
			return fmt.Sprintf("online %d, connect errors %d, pending %d", s.Online, s.ConnectErrors, s.Pending)
		}, func() bool { return f.Stats().Online == n })

		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		used := float64(after.HeapInuse+after.StackInuse) - float64(before.HeapInuse+before.StackInuse)
		mbPerDevice = used / float64(n) / (1 << 20)
		goroutinesPerDevice = float64(runtime.NumGoroutine()-g0) / float64(n)

		for _, id := range ids {
			br.publishDesired(desired(id.ID, 1, img))
		}
		eventually(b, time.Minute, func() string { return fmt.Sprint(f.Stats().Phases) }, func() bool {
			return f.Stats().Phases[twin.Running] == n
		})
		// ... and the broker has every device's final report.
		eventually(b, time.Minute, func() string { return "final reports" }, func() bool {
			for _, id := range ids {
				if r, ok := br.reported(id.ID); !ok || len(r.Services) != 1 || r.Services[0].Phase != twin.Running {
					return false
				}
			}
			return true
		})
		st := f.Stats()
		msgsPerDevice = float64(st.Sent+st.Received) / float64(n)
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		br.close()
	}
	b.ReportMetric(mbPerDevice, "MB/device")
	b.ReportMetric(goroutinesPerDevice, "goroutines/device")
	b.ReportMetric(msgsPerDevice, "msgs/device")
}
