package sim

import (
	"container/heap"
	"context"
	"sync"
	"time"
)

// Clock is where simulated time comes from. The fleet's MQTT traffic always
// runs in real time; only the simulated runtime's delays (pull, start, crash,
// reconnect backoff) are measured on the Clock, so tests can drive the
// per-device state machine with a fake one.
type Clock interface {
	Now() time.Time
	// After returns a channel that receives once d has passed.
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// RealClock is the wall clock, the default.
var RealClock Clock = realClock{}

// eventKind says what a scheduled event does.
type eventKind uint8

const (
	evPullDone  eventKind = iota + 1 // the image is pulled: start it (or fail)
	evStartDone                      // the container started: Running (or fail)
	evCrash                          // the new version crashes: roll back
	evReconnect                      // try to connect again after a backoff
	evTelemetry                      // send a telemetry batch, like the daemon's window
)

// event is one simulated delay ending. Events of a service carry the
// device-wide generation the service had when they were scheduled; a later
// change of the service makes them stale, and they are dropped when due.
type event struct {
	at   int64 // Clock time in Unix nanoseconds
	dev  *device
	svc  string
	gen  uint32
	kind eventKind
}

type eventHeap []event

func (h eventHeap) Len() int           { return len(h) }
func (h eventHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h eventHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *eventHeap) Push(x any)        { *h = append(*h, x.(event)) }
func (h *eventHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = event{}
	*h = old[:len(old)-1]
	return e
}

// scheduler runs every device's simulated delays from one heap and one
// goroutine: ten thousand devices need no timer each.
type scheduler struct {
	clock Clock
	fire  func(event, time.Time)

	mu   sync.Mutex
	h    eventHeap
	wake chan struct{}
}

func newScheduler(clock Clock, fire func(event, time.Time)) *scheduler {
	return &scheduler{clock: clock, fire: fire, wake: make(chan struct{}, 1)}
}

// add schedules e; it is safe from any goroutine.
func (s *scheduler) add(e event) {
	s.mu.Lock()
	heap.Push(&s.h, e)
	first := s.h[0].at == e.at
	s.mu.Unlock()
	if first {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// pending is the number of events not yet due.
func (s *scheduler) pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.h)
}

// runDue fires every event due at now, in time order, and returns the time
// of the next one (ok false when none is left).
func (s *scheduler) runDue(now time.Time) (next time.Time, ok bool) {
	n := now.UnixNano()
	for {
		s.mu.Lock()
		if len(s.h) == 0 {
			s.mu.Unlock()
			return time.Time{}, false
		}
		if s.h[0].at > n {
			at := s.h[0].at
			s.mu.Unlock()
			return time.Unix(0, at), true
		}
		e := heap.Pop(&s.h).(event)
		s.mu.Unlock()
		s.fire(e, now)
	}
}

// run fires events as they fall due until ctx ends.
func (s *scheduler) run(ctx context.Context) {
	for {
		now := s.clock.Now()
		next, ok := s.runDue(now)
		var timer <-chan time.Time
		if ok {
			timer = s.clock.After(next.Sub(now))
		}
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-timer:
		}
	}
}
