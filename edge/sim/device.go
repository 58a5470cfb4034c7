package sim

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/mlfleet/mlfleet/shared/twin"
)

// Agent is what simulated devices report as their daemon version.
const Agent = "mlfleet-sim"

// connState is where a device's MQTT session is.
type connState uint8

const (
	stOffline    connState = iota // no session, none queued
	stQueued                      // waiting for the connector (rate limit)
	stConnecting                  // connect/subscribe/resync in flight
	stOnline                      // resynced; messages flow
)

// fate is what will become of a service's update, drawn when it starts so
// that a run is reproducible from the seed.
type fate uint8

const (
	fateOK        fate = iota
	fateFailPull       // the pull fails: keep (or lack) the old version
	fateFailStart      // the new container exits while starting
	fateCrash          // Running, then crashes and is rolled back
)

// Reasons the simulated runtime gives.
const (
	ReasonPull  = "pull failed: simulated registry error"
	ReasonStart = "start failed: simulated container exit (code 1)"
	ReasonCrash = "crashed after start: simulated container exit (code 137)"
)

// svc is one service's simulated state on a device.
type svc struct {
	name    string
	phase   twin.Phase
	image   string // serving now ("" when nothing is)
	wanted  string // the image being rolled out, when it differs from image
	prev    string // what to roll back to after a crash
	reason  string
	since   time.Time
	healthy bool
	fate    fate
	gen     uint32   // events of an older generation are stale
	traffic *traffic // scorer counters, only when the fleet sends telemetry
}

// device is one simulated device: its identity, its MQTT client, and the
// state its simulated runtime is in. Kept small: ten thousand share a process.
type device struct {
	id, cred string
	index    int

	sent, recv, connects atomic.Uint32

	mu       sync.Mutex
	client   mqtt.Client
	conn     net.Conn // of the current session, to cut it abruptly
	state    connState
	want     bool // SetOnline says the device should be connected
	attempts uint8
	version  uint64 // newest desired version accepted (the device's "persisted" one)
	gen      uint32
	rng      uint64 // splitmix64 state
	services []svc
	// Telemetry batches: numbered, dropped while offline, acknowledged.
	telSeq, telDropped, telSent, telAcked uint64
}

// rand returns a uniform float in [0,1); d.mu must be held.
func (d *device) rand() float64 {
	d.rng += 0x9e3779b97f4a7c15
	z := d.rng
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	z ^= z >> 31
	return float64(z>>11) / (1 << 53)
}

// jitter returns base moved uniformly by up to +-j, never negative; d.mu
// must be held.
func (d *device) jitter(base, j time.Duration) time.Duration {
	if j > 0 {
		base += time.Duration((d.rand()*2 - 1) * float64(j))
	}
	return max(base, 0)
}

func (d *device) find(name string) *svc {
	for i := range d.services {
		if d.services[i].name == name {
			return &d.services[i]
		}
	}
	return nil
}

// reported is the device's Reported document; d.mu must be held.
func (d *device) reported(now time.Time) twin.Reported {
	r := twin.Reported{
		Protocol: twin.Protocol, Device: d.id, ObservedVersion: d.version,
		Time: now.UTC(), Agent: Agent, Services: make([]twin.ServiceStatus, 0, len(d.services)),
	}
	for _, s := range d.services {
		st := twin.ServiceStatus{Name: s.name, Phase: s.phase, Image: s.image, Healthy: s.healthy, Reason: s.reason, Since: s.since.UTC()}
		if s.wanted != s.image {
			st.Wanted = s.wanted
		}
		r.Services = append(r.Services, st)
	}
	return r
}

// engine is the simulated runtime: what the state machine needs from the fleet: settings, the
// scheduler, and a way to publish. It lets unit tests run the state machine
// on a fake clock without a broker.
type engine struct {
	cfg   *Config
	sched *scheduler
	// report publishes d's Reported document; called with d.mu held so that
	// reports leave in the order the state changed.
	report func(d *device, now time.Time)
	stale  atomic.Uint64
}

// apply handles an accepted, decoded desired document: ignored unless its
// version is newer than the one the device holds, else reconciled service
// by service. It reports whether the document was applied.
func (rt *engine) apply(d *device, doc twin.Desired, now time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if doc.Version <= d.version {
		rt.stale.Add(1)
		return false
	}
	d.version = doc.Version
	next := make([]svc, 0, len(doc.Services))
	for _, spec := range doc.Services {
		old := d.find(spec.Name)
		var s svc
		if old != nil {
			s = *old
		} else {
			s = svc{name: spec.Name}
		}
		switch {
		case old != nil && s.image == spec.Image && s.wanted == spec.Image && s.phase == twin.Running:
			// Unchanged: keep running.
		case old != nil && s.wanted == spec.Image && (s.phase == twin.Pulling || s.phase == twin.Starting):
			// Already on its way there.
		case old != nil && s.image == spec.Image:
			// Back to the version still serving (a rollback by the cloud):
			// drop the update in flight.
			d.gen++
			s = svc{name: s.name, phase: twin.Running, image: s.image, wanted: s.image, prev: s.prev, since: now, healthy: true, gen: d.gen, traffic: s.traffic}
		default:
			d.gen++
			s = svc{name: s.name, phase: twin.Pulling, image: s.image, wanted: spec.Image, prev: s.image,
				since: now, healthy: s.image != "" && s.healthy, gen: d.gen, traffic: s.traffic}
			s.fate = rt.drawFate(d)
			rt.sched.add(event{at: now.Add(d.jitter(rt.cfg.PullTime, rt.cfg.PullJitter)).UnixNano(), dev: d, svc: s.name, gen: s.gen, kind: evPullDone})
		}
		next = append(next, s)
	}
	d.services = next // services no longer desired are dropped
	rt.report(d, now)
	return true
}

// drawFate decides how an update will go; d.mu must be held.
func (rt *engine) drawFate(d *device) fate {
	if x := d.rand(); x < rt.cfg.FailRate {
		if x < rt.cfg.FailRate/2 {
			return fateFailPull
		}
		return fateFailStart
	}
	if d.rand() < rt.cfg.CrashRate {
		return fateCrash
	}
	return fateOK
}

// step runs a due service event of the simulated runtime.
func (rt *engine) step(e event, now time.Time) {
	d := e.dev
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.find(e.svc)
	if s == nil || s.gen != e.gen {
		return // the service changed or went away since
	}
	switch e.kind {
	case evPullDone:
		if s.phase != twin.Pulling {
			return
		}
		if s.fate == fateFailPull {
			rt.fail(s, ReasonPull, s.image, now)
			break
		}
		s.phase, s.since = twin.Starting, now
		rt.sched.add(event{at: now.Add(d.jitter(rt.cfg.StartTime, rt.cfg.StartJitter)).UnixNano(), dev: d, svc: s.name, gen: s.gen, kind: evStartDone})
	case evStartDone:
		if s.phase != twin.Starting {
			return
		}
		if reason, bad := rt.cfg.FailImages[s.wanted]; bad {
			rt.fail(s, reason, s.image, now)
			break
		}
		if s.fate == fateFailStart {
			rt.fail(s, ReasonStart, s.image, now)
			break
		}
		s.phase, s.image, s.healthy, s.reason, s.since = twin.Running, s.wanted, true, "", now
		if s.fate == fateCrash {
			rt.sched.add(event{at: now.Add(d.jitter(rt.cfg.StartTime, rt.cfg.StartJitter)).UnixNano(), dev: d, svc: s.name, gen: s.gen, kind: evCrash})
		}
	case evCrash:
		if s.phase != twin.Running || s.image != s.wanted {
			return
		}
		rt.fail(s, ReasonCrash, s.prev, now)
	default:
		return
	}
	rt.report(d, now)
}

// fail ends an update: back to the old image if there is one (RolledBack,
// still serving and healthy), else Failed with nothing serving. The wanted
// image stays, so the cloud sees what did not work.
func (rt *engine) fail(s *svc, reason, back string, now time.Time) {
	s.reason, s.since = reason, now
	if back != "" {
		s.phase, s.image, s.healthy = twin.RolledBack, back, true
		return
	}
	s.phase, s.image, s.healthy = twin.Failed, "", false
}
