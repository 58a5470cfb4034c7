package edge

import (
	"maps"
	"reflect"
	"slices"
	"time"

	"github.com/mlfleet/mlfleet/edge/internal/boltstore"
	"github.com/mlfleet/mlfleet/shared/twin"
)

// Retry pacing used by Plan.
const (
	// RetryBase is the wait before retrying a failed image; it doubles with
	// every failed attempt up to RetryMax.
	RetryBase = 10 * time.Second
	RetryMax  = 10 * time.Minute
	// RestartBase paces restarts of a crashed instance the same way (the
	// first restart is immediate), up to RestartMax. A restart older than
	// RestartReset no longer counts.
	RestartBase  = time.Second
	RestartMax   = 5 * time.Minute
	RestartReset = 10 * time.Minute
)

// Observed is what the daemon knows when it plans: the persisted service
// states, the runtime's instances and the health monitor's verdicts.
type Observed struct {
	Now       time.Time
	Services  map[string]boltstore.ServiceState
	Instances []Instance
	// Unhealthy holds the ids of running instances whose health probe failed
	// FailureThreshold times in a row.
	Unhealthy map[string]bool
}

// ActionKind says what an Action does.
type ActionKind string

// The action kinds, in the order Plan emits them.
const (
	// ActRemove stops a service that is no longer desired and forgets it.
	ActRemove ActionKind = "remove"
	// ActStopOrphan stops an instance no service state refers to (left over
	// from an interrupted deploy or a lost state).
	ActStopOrphan ActionKind = "stop-orphan"
	// ActRestart restarts the current instance of a service whose task is
	// gone (reboot, containerd restart) or exited, from local state.
	ActRestart ActionKind = "restart"
	// ActDeploy runs Spec blue/green beside whatever serves now.
	ActDeploy ActionKind = "deploy"
	// ActSettle records that a service runs its desired spec (clears an old
	// failure once the cloud asks for what already serves).
	ActSettle ActionKind = "settle"
	// ActGC removes images no service needs (current and previous are kept).
	ActGC ActionKind = "gc"
)

// Action is one step of a reconcile.
type Action struct {
	Kind    ActionKind
	Service string
	// Spec is the spec to deploy (ActDeploy), with defaults filled in.
	Spec twin.ServiceSpec
	// Instance is the instance to restart or stop.
	Instance string
	// Reason says why, for logs and reports.
	Reason string
}

// Plan compares the desired state with what the device has and returns the
// actions that move it there, in a fixed order: removals, orphan stops,
// restarts, deploys, settles, and a GC after any deploy or removal. It is a
// pure function of its arguments.
//
// A desired document with version 0 means none was ever received: the
// services in local state are then kept as they are (offline autonomy).
func Plan(desired twin.Desired, observed Observed) []Action {
	now := observed.Now
	services := desired.Services
	if desired.Version == 0 {
		services = nil
		for _, name := range slices.Sorted(maps.Keys(observed.Services)) {
			if st := observed.Services[name]; st.Spec.Image != "" {
				services = append(services, st.Spec)
			}
		}
	}
	instances := map[string]Instance{}
	for _, in := range observed.Instances {
		instances[in.ID] = in
	}
	want := map[string]bool{}
	var removes, orphans, restarts, deploys, settles []Action

	for _, raw := range services {
		spec := raw.WithDefaults()
		want[spec.Name] = true
		st, known := observed.Services[spec.Name]
		if !known || st.Image == "" || st.Instance == "" {
			if retryPending(st, spec, now) {
				continue
			}
			deploys = append(deploys, Action{Kind: ActDeploy, Service: spec.Name, Spec: spec, Reason: "install"})
			continue
		}
		in, exists := instances[st.Instance]
		if !sameSpec(st.Spec, spec) {
			if retryPending(st, spec, now) {
				continue
			}
			deploys = append(deploys, Action{Kind: ActDeploy, Service: spec.Name, Spec: spec, Reason: "update"})
			continue
		}
		switch {
		case !exists:
			deploys = append(deploys, Action{Kind: ActDeploy, Service: spec.Name, Spec: spec, Reason: "instance missing"})
		case in.State == InstanceNoTask || in.State == InstanceStopped:
			if restartPending(st, now) {
				continue
			}
			reason := "no task"
			if in.State == InstanceStopped {
				reason = "exited"
			}
			restarts = append(restarts, Action{Kind: ActRestart, Service: spec.Name, Instance: in.ID, Reason: reason})
		case observed.Unhealthy[in.ID]:
			deploys = append(deploys, Action{Kind: ActDeploy, Service: spec.Name, Spec: spec, Reason: "unhealthy"})
		case st.Phase != twin.Running || st.Wanted != "" || st.Reason != "":
			settles = append(settles, Action{Kind: ActSettle, Service: spec.Name, Reason: "serving desired spec"})
		}
	}

	current := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(observed.Services)) {
		st := observed.Services[name]
		if !want[name] {
			removes = append(removes, Action{Kind: ActRemove, Service: name, Instance: st.Instance, Reason: "not desired"})
			continue
		}
		if st.Instance != "" {
			current[st.Instance] = true
		}
	}
	for _, id := range slices.Sorted(maps.Keys(instances)) {
		if !current[id] && !removing(removes, id) {
			orphans = append(orphans, Action{Kind: ActStopOrphan, Service: instances[id].Service, Instance: id, Reason: "no service state refers to it"})
		}
	}

	out := slices.Concat(removes, orphans, restarts, deploys, settles)
	if len(removes) > 0 || len(deploys) > 0 {
		out = append(out, Action{Kind: ActGC, Reason: "keep current and previous images"})
	}
	return out
}

func removing(removes []Action, id string) bool {
	for _, a := range removes {
		if a.Instance == id {
			return true
		}
	}
	return false
}

// sameSpec compares what runs, ignoring pull credentials (they rotate).
func sameSpec(a, b twin.ServiceSpec) bool {
	a, b = a.WithDefaults(), b.WithDefaults()
	a.Pull, b.Pull = nil, nil
	if len(a.Env) == 0 && len(b.Env) == 0 {
		a.Env, b.Env = nil, nil
	}
	return reflect.DeepEqual(a, b)
}

// retryPending reports whether spec's image failed recently enough that the
// next attempt must wait.
func retryPending(st boltstore.ServiceState, spec twin.ServiceSpec, now time.Time) bool {
	if st.Attempts == 0 || st.Wanted != spec.Image || st.FailedAt.IsZero() {
		return false
	}
	if st.Phase != twin.Failed && st.Phase != twin.RolledBack {
		return false
	}
	return now.Before(st.FailedAt.Add(backoff(RetryBase, RetryMax, st.Attempts-1)))
}

func restartPending(st boltstore.ServiceState, now time.Time) bool {
	if st.Restarts == 0 || st.RestartedAt.IsZero() || now.Sub(st.RestartedAt) >= RestartReset {
		return false
	}
	return now.Before(st.RestartedAt.Add(backoff(RestartBase, RestartMax, st.Restarts-1)))
}

func backoff(base, limit time.Duration, n int) time.Duration {
	d := base
	for range n {
		d *= 2
		if d >= limit {
			return limit
		}
	}
	return d
}
