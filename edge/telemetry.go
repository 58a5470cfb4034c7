package edge

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mlfleet/mlfleet/edge/internal/boltstore"
	"github.com/mlfleet/mlfleet/edge/internal/promtext"
	"github.com/mlfleet/mlfleet/shared/errclass"
	"github.com/mlfleet/mlfleet/shared/twin"
)

// Bounds on what a scorer may answer for telemetry.
const (
	maxMetricsBody = 1 << 20
	maxProfileBody = 512 << 10
)

var scrapeClient = &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 2}, Timeout: 10 * time.Second}

func (d *Daemon) telemetryLoop(ctx context.Context) error {
	t := time.NewTicker(d.cfg.TelemetryWindow)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if d.deviceID == "" {
			continue
		}
		states, err := d.store.Services()
		if err != nil {
			d.log.Error("read services", "err", err)
			continue
		}
		batch := Collect(ctx, d.deviceID, d.cfg.Now(), states, func(err error) { d.log.Warn("telemetry", "err", err) })
		if len(batch.Services) == 0 {
			continue
		}
		if _, err := d.store.Enqueue(batch); err != nil {
			d.log.Error("queue telemetry", "err", err)
			continue
		}
		if d.sync != nil {
			d.sync.NotifyTelemetry()
		}
	}
}

// Collect scrapes /metrics and /v1/profile of every serving service into one
// telemetry batch (Seq is given by the outbox). A service that fails to
// answer is reported through warn and left out of the batch.
func Collect(ctx context.Context, device string, now time.Time, states map[string]boltstore.ServiceState, warn func(error)) twin.Telemetry {
	batch := twin.Telemetry{Protocol: twin.Protocol, Device: device, Time: now.UTC(), Services: []twin.ServiceTelemetry{}}
	names := slices.Sorted(func(yield func(string) bool) {
		for k := range states {
			if !yield(k) {
				return
			}
		}
	})
	size := 0
	for _, name := range names {
		st := states[name]
		if st.Instance == "" || st.Port == 0 || (st.Phase != twin.Running && st.Phase != twin.RolledBack) {
			continue
		}
		base := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(st.Port))
		svc := twin.ServiceTelemetry{Name: name, Image: st.Image}
		body, err := fetch(ctx, base+"/metrics", maxMetricsBody)
		if err == nil {
			svc.Metrics, err = promtext.Parse(strings.NewReader(string(body)))
		}
		if err != nil {
			warn(fmt.Errorf("metrics of service %s: %w", name, err))
		}
		body, err = fetch(ctx, base+"/v1/profile", maxProfileBody)
		if err == nil && !json.Valid(body) {
			err = errclass.Invalid("profile", "profile is not JSON")
		}
		if err != nil {
			warn(fmt.Errorf("profile of service %s: %w", name, err))
		} else {
			svc.Profile = json.RawMessage(body)
		}
		if svc.Metrics == nil && svc.Profile == nil {
			continue
		}
		enc, _ := json.Marshal(svc)
		if size+len(enc) > twin.MaxTelemetry-4096 {
			warn(errclass.New(errclass.TooLarge, "", "telemetry of service %s does not fit in the batch; skipped", name))
			continue
		}
		size += len(enc)
		batch.Services = append(batch.Services, svc)
	}
	return batch
}

func fetch(ctx context.Context, url string, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := scrapeClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s answered %d", url, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	if int64(len(body)) > limit {
		return nil, errclass.New(errclass.TooLarge, "", "GET %s: answer larger than %d bytes", url, limit)
	}
	return body, nil
}
