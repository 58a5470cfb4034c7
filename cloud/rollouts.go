package cloud

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/mlfleet/mlfleet/shared/errclass"
	"github.com/mlfleet/mlfleet/shared/twin"
)

// BatchSpec sizes one batch of a rollout: a number of devices or a
// percentage of the environment (exactly one of them).
type BatchSpec struct {
	Count   int     `json:"count,omitempty"`
	Percent float64 `json:"percent,omitempty"`
}

// RolloutSpec tunes a rollout.
type RolloutSpec struct {
	// Batches are taken in order; devices left over form an implicit last
	// batch. Default: one batch of every device.
	Batches []BatchSpec `json:"batches,omitempty"`
	// SuccessThreshold is the fraction of a batch that must become healthy
	// for the rollout to go on (default 1: all of it).
	SuccessThreshold float64 `json:"successThreshold,omitempty"`
	// SoakSeconds is how long a finished batch must stay healthy before the
	// next one starts.
	SoakSeconds int `json:"soakSeconds,omitempty"`
	// DeviceTimeoutSeconds is how long a device may take to report the new
	// version healthy (offline devices wait that long, then count as
	// failed; default 600).
	DeviceTimeoutSeconds int `json:"deviceTimeoutSeconds,omitempty"`
	// ErrorThreshold is the fraction of the rollout's devices that may fail
	// before it stops and reverts every updated device (default 0: the
	// first failure).
	ErrorThreshold float64 `json:"errorThreshold,omitempty"`
	// MaxUnavailable bounds how many devices of a batch update at once
	// (0: the whole batch).
	MaxUnavailable int `json:"maxUnavailable,omitempty"`
	// SLO, when set, also gates each batch on the error rate and latency
	// its devices measure on the new image (see SLOGate).
	SLO *SLOGate `json:"slo,omitempty"`
}

func (r *RolloutSpec) normalize() error {
	if r.SuccessThreshold == 0 {
		r.SuccessThreshold = 1
	}
	if r.DeviceTimeoutSeconds == 0 {
		r.DeviceTimeoutSeconds = 600
	}
	switch {
	case r.SuccessThreshold < 0 || r.SuccessThreshold > 1 || math.IsNaN(r.SuccessThreshold):
		return errclass.Invalid("successThreshold", "successThreshold %v is not between 0 and 1", r.SuccessThreshold)
	case r.ErrorThreshold < 0 || r.ErrorThreshold >= 1 || math.IsNaN(r.ErrorThreshold):
		return errclass.Invalid("errorThreshold", "errorThreshold %v is not in [0, 1)", r.ErrorThreshold)
	case r.SoakSeconds < 0 || r.SoakSeconds > 7*24*3600:
		return errclass.Invalid("soakSeconds", "soakSeconds %d is not between 0 and a week", r.SoakSeconds)
	case r.DeviceTimeoutSeconds < 0 || r.DeviceTimeoutSeconds > 7*24*3600:
		return errclass.Invalid("deviceTimeoutSeconds", "deviceTimeoutSeconds %d is not between 1 second and a week", r.DeviceTimeoutSeconds)
	case r.MaxUnavailable < 0:
		return errclass.Invalid("maxUnavailable", "maxUnavailable %d is negative", r.MaxUnavailable)
	case len(r.Batches) > 100:
		return errclass.Invalid("batches", "%d batches; the limit is 100", len(r.Batches))
	}
	if r.SLO != nil {
		if err := r.SLO.normalize(); err != nil {
			return err
		}
	}
	for i, b := range r.Batches {
		f := fmt.Sprintf("batches[%d]", i)
		switch {
		case (b.Count > 0) == (b.Percent > 0):
			return errclass.Invalid(f, "%s must have exactly one of count or percent, positive", f)
		case b.Count < 0 || b.Percent < 0 || b.Percent > 100 || math.IsNaN(b.Percent):
			return errclass.Invalid(f, "%s: count %d / percent %v out of range", f, b.Count, b.Percent)
		}
	}
	return nil
}

// sizes splits n devices into batch sizes.
func (r *RolloutSpec) sizes(n int) []int {
	var out []int
	left := n
	for _, b := range r.Batches {
		if left == 0 {
			break
		}
		k := b.Count
		if b.Percent > 0 {
			k = int(math.Ceil(b.Percent / 100 * float64(n)))
		}
		k = max(1, min(k, left))
		out = append(out, k)
		left -= k
	}
	if left > 0 {
		out = append(out, left)
	}
	return out
}

// Rollout states.
const (
	RolloutRunning   = "Running"
	RolloutPaused    = "Paused"
	RolloutSucceeded = "Succeeded"
	RolloutReverted  = "Reverted" // the error threshold tripped; updated devices were reverted
	RolloutAborted   = "Aborted"  // stopped by a user; updated devices were reverted
)

// Device outcome states within a rollout.
const (
	DevicePending  = "Pending"
	DeviceUpdating = "Updating"
	DeviceHealthy  = "Healthy"
	DeviceFailed   = "Failed"
	DeviceReverted = "Reverted"
)

// DeviceOutcome is one device's part in a rollout.
type DeviceOutcome struct {
	Batch  int       `json:"batch"`
	State  string    `json:"state"`
	Reason string    `json:"reason,omitempty"`
	Since  time.Time `json:"since"`
	// Version is the desired version that first carried the new image.
	Version uint64 `json:"version,omitempty"`
	// SLO is what the rollout's SLO gate last measured on the device.
	SLO *SLOMark `json:"slo,omitempty"`
}

// Rollout moves a service's devices from one image to another in batches,
// gated on the health the devices report.
type Rollout struct {
	Meta
	ID        string `json:"id"`
	Service   string `json:"service"`
	From      string `json:"from,omitempty"` // image name:version ("" for a new service)
	FromRef   string `json:"fromReference,omitempty"`
	To        string `json:"to"`
	ToRef     string `json:"toReference"`
	Spec      RolloutSpec
	State     string `json:"state"`
	Message   string `json:"message,omitempty"`
	Batch     int    `json:"batch"` // current batch, from 0
	BatchSize []int  `json:"batchSizes"`
	// BatchDoneAt is when every device of the current batch had an outcome.
	BatchDoneAt *time.Time               `json:"batchDoneAt,omitempty"`
	Devices     map[string]DeviceOutcome `json:"devices"`
	Counts      map[string]int           `json:"counts"`
	FinishedAt  *time.Time               `json:"finishedAt,omitempty"`
}

// RolloutPath is the path of a rollout.
func RolloutPath(servicePath, id string) string { return servicePath + "/rollouts/" + id }

const activeRollouts = "/activerollouts"

// startRollout records a rollout of svc to img over devs, inside tx.
func (s *Service) startRollout(ctx context.Context, tx Tx, svc *ScoringService, img *Image, spec RolloutSpec, devs []Device) (*Rollout, error) {
	if svc.Rollout != "" {
		return nil, errclass.Conflictf("service %s already has rollout %s in progress; pause, abort or wait for it", svc.Name, svc.Rollout)
	}
	if len(devs) == 0 {
		return nil, errclass.New(errclass.FailedPrecondition, "environment", "environment %q has no devices", svc.Environment)
	}
	seq, err := tx.NextSeq(svc.Path + "/rollouts")
	if err != nil {
		return nil, err
	}
	id := fmt.Sprintf("%06d", seq)
	now := s.now()
	to := fmt.Sprintf("%s:%d", img.Name, img.Version)
	ro := Rollout{Meta: s.meta(ctx, RolloutPath(svc.Path, id)), ID: id, Service: svc.Name, From: svc.Image, FromRef: svc.ImageReference,
		To: to, ToRef: img.Reference, Spec: spec, State: RolloutRunning, BatchSize: spec.sizes(len(devs)), Devices: map[string]DeviceOutcome{}}
	i := 0
	for b, n := range ro.BatchSize {
		for k := 0; k < n; k++ {
			ro.Devices[devs[i].ID] = DeviceOutcome{Batch: b, State: DevicePending, Since: now}
			i++
		}
	}
	ro.count()
	if err := tx.Create(ro.Path, &ro); err != nil {
		return nil, err
	}
	if err := tx.AddRef(img.Path, svc.Path); err != nil {
		return nil, err
	}
	svc.Rollout = id
	if err := tx.Put(svc.Path, svc); err != nil {
		return nil, err
	}
	return &ro, tx.Put(activeRollouts+"/"+strings.ReplaceAll(strings.TrimPrefix(ro.Path, "/"), "/", "|"), map[string]string{"path": ro.Path})
}

func (r *Rollout) count() {
	r.Counts = map[string]int{}
	for _, o := range r.Devices {
		r.Counts[o.State]++
	}
}

// RolloutRequest starts a rollout of a service to an image version.
type RolloutRequest struct {
	Image string `json:"image"` // name:version in the service's account
	RolloutSpec
}

// StartRollout starts moving a service to another image.
func (s *Service) StartRollout(ctx context.Context, sub, acct, service string, in RolloutRequest) (*Rollout, error) {
	path := ServicePath(sub, acct, service)
	if _, err := authorize(ctx, path, Contributor); err != nil {
		return nil, err
	}
	if strings.Contains(in.Image, "/") {
		return nil, errclass.Invalid("image", "image %q: name an image version of this account as NAME:VERSION", in.Image)
	}
	spec := in.RolloutSpec
	if err := spec.normalize(); err != nil {
		return nil, err
	}
	var ro *Rollout
	err := s.store.Update(ctx, func(tx Tx) error {
		var svc ScoringService
		if err := tx.Get(path, &svc); err != nil {
			return err
		}
		img, err := resolveImage(tx, sub, acct, "image", in.Image)
		if err != nil {
			return err
		}
		if img.Reference == svc.ImageReference && svc.Rollout == "" {
			return errclass.New(errclass.FailedPrecondition, "image", "service %s already runs %s", service, in.Image)
		}
		var env Environment
		if err := tx.Get(EnvironmentPath(sub, acct, svc.Environment), &env); err != nil {
			return err
		}
		devs, err := members(tx, &env)
		if err != nil {
			return err
		}
		ro, err = s.startRollout(ctx, tx, &svc, img, spec, devs)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.kickRollouts()
	return ro, nil
}

// RollbackService starts a rollout back to the service's previous image.
func (s *Service) RollbackService(ctx context.Context, sub, acct, service string) (*Rollout, error) {
	svc, err := s.GetService(ctx, sub, acct, service)
	if err != nil {
		return nil, err
	}
	if svc.Previous == "" {
		return nil, errclass.New(errclass.FailedPrecondition, "previous", "service %s has no previous image to roll back to", service)
	}
	return s.StartRollout(ctx, sub, acct, service, RolloutRequest{Image: svc.Previous})
}

// GetRollout reads a rollout.
func (s *Service) GetRollout(ctx context.Context, sub, acct, service, id string) (*Rollout, error) {
	return get[Rollout](ctx, s, RolloutPath(ServicePath(sub, acct, service), id), Reader)
}

// ListRollouts lists a service's rollouts.
func (s *Service) ListRollouts(ctx context.Context, sub, acct, service string, o ListOptions) (Page[Rollout], error) {
	if _, err := authorize(ctx, ServicePath(sub, acct, service), Reader); err != nil {
		return Page[Rollout]{}, err
	}
	return list[Rollout](ctx, s, ServicePath(sub, acct, service)+"/rollouts", 1, o, nil)
}

// Rollout actions a user can take.
const (
	ActionPause  = "pause"
	ActionResume = "resume"
	ActionAbort  = "abort"
)

// ActOnRollout pauses, resumes or aborts (reverting updated devices) a rollout.
func (s *Service) ActOnRollout(ctx context.Context, sub, acct, service, id, action string) (*Rollout, error) {
	svcPath := ServicePath(sub, acct, service)
	path := RolloutPath(svcPath, id)
	if _, err := authorize(ctx, path, Contributor); err != nil {
		return nil, err
	}
	var ro Rollout
	var publish []*twin.Desired
	err := s.store.Update(ctx, func(tx Tx) error {
		if err := tx.Get(path, &ro); err != nil {
			return err
		}
		switch {
		case action == ActionPause && ro.State == RolloutRunning:
			ro.State, ro.Message = RolloutPaused, "paused by "+PrincipalFrom(ctx).User.Name
		case action == ActionResume && ro.State == RolloutPaused:
			ro.State, ro.Message = RolloutRunning, ""
		case action == ActionAbort && (ro.State == RolloutRunning || ro.State == RolloutPaused):
			var err error
			if publish, err = s.revert(tx, &ro, RolloutAborted, "aborted by "+PrincipalFrom(ctx).User.Name); err != nil {
				return err
			}
		case action != ActionPause && action != ActionResume && action != ActionAbort:
			return errclass.Invalid("action", "action %q is not pause, resume or abort", action)
		default:
			return errclass.New(errclass.FailedPrecondition, "state", "cannot %s a rollout that is %s", action, ro.State)
		}
		ro.UpdatedAt = s.now()
		return tx.Put(path, &ro)
	})
	if err != nil {
		return nil, err
	}
	s.publishAll(ctx, publish)
	s.kickRollouts()
	return &ro, nil
}

// kickRollouts asks the engine to look at rollouts now.
func (s *Service) kickRollouts() {
	select {
	case s.rolloutKick <- struct{}{}:
	default:
	}
}

// RunRollouts drives every active rollout until ctx ends: on each tick, and
// whenever devices report or users act. Its state lives in the store, so a
// restarted cloud resumes where it was.
func (s *Service) RunRollouts(ctx context.Context, tick time.Duration) error {
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		s.stepRollouts(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-s.rolloutKick:
		}
	}
}

func (s *Service) stepRollouts(ctx context.Context) {
	var paths []string
	err := s.store.View(ctx, func(tx Tx) error {
		_, err := tx.List(activeRollouts, 1, "", 0, func(raw []byte) error {
			var v struct {
				Path string `json:"path"`
			}
			if err := json.Unmarshal(raw, &v); err != nil {
				return err
			}
			paths = append(paths, v.Path)
			return nil
		})
		return err
	})
	if err != nil {
		slog.Error("list active rollouts", "err", err)
		return
	}
	for _, p := range paths {
		if err := s.stepRollout(ctx, p); err != nil && ctx.Err() == nil {
			slog.Error("rollout step", "rollout", p, "err", err)
		}
	}
}

// stepRollout advances one rollout: it observes what devices report, trips
// the error threshold, moves batches on, and finishes.
func (s *Service) stepRollout(ctx context.Context, path string) error {
	var publish []*twin.Desired
	err := s.store.Update(ctx, func(tx Tx) error {
		var ro Rollout
		if err := tx.Get(path, &ro); err != nil {
			if errclass.Is(err, errclass.NotFound) { // service deleted
				return tx.Delete(activeKey(path))
			}
			return err
		}
		if ro.State != RolloutRunning {
			if ro.State != RolloutPaused {
				return tx.Delete(activeKey(path))
			}
			return nil
		}
		svcPath := path[:strings.LastIndex(path, "/rollouts/")]
		var svc ScoringService
		if err := tx.Get(svcPath, &svc); err != nil {
			return err
		}
		var env Environment
		if err := tx.Get(EnvironmentPath(svc.Subscription, svc.Account, svc.Environment), &env); err != nil {
			return err
		}
		devs, err := members(tx, &env)
		if err != nil {
			return err
		}
		before, _ := json.Marshal(ro.Devices)
		slo, err := sloVerdicts(tx, &ro, svc.Name, devs)
		if err != nil {
			return err
		}
		var assign []string
		publish, assign = nil, nil
		finished := s.decide(&ro, &svc, devs, slo, s.now(), &assign)
		p, err := s.assign(tx, &svc, assign, ro.ToRef, &ro)
		if err != nil {
			return err
		}
		publish = append(publish, p...)
		switch {
		case ro.State == RolloutReverted:
			p, err := s.revert(tx, &ro, RolloutReverted, ro.Message)
			if err != nil {
				return err
			}
			publish = append(publish, p...)
		case finished:
			now := s.now()
			ro.State, ro.FinishedAt = RolloutSucceeded, &now
			svc.Previous, svc.PreviousReference = svc.Image, svc.ImageReference
			svc.Image, svc.ImageReference, svc.Rollout = ro.To, ro.ToRef, ""
			if err := tx.Put(svc.Path, &svc); err != nil {
				return err
			}
			// Devices now follow the service's image: drop their pins.
			p, err := s.recomputeAccount(tx, svc.Subscription, svc.Account, func(d *Device) { delete(d.Assignments, svc.Name) })
			if err != nil {
				return err
			}
			publish = append(publish, p...)
			if err := tx.Delete(activeKey(path)); err != nil {
				return err
			}
		}
		after, _ := json.Marshal(ro.Devices)
		ro.count()
		if string(before) == string(after) && len(publish) == 0 && ro.State == RolloutRunning && !finished {
			return nil // nothing changed: no write
		}
		ro.UpdatedAt = s.now()
		return tx.Put(path, &ro)
	})
	if err != nil {
		return err
	}
	s.publishAll(ctx, publish)
	return nil
}

func activeKey(rolloutPath string) string {
	return activeRollouts + "/" + strings.ReplaceAll(strings.TrimPrefix(rolloutPath, "/"), "/", "|")
}

// decide is the rollout's decision logic, free of storage: it updates the
// device outcomes from what devices report, and lists the devices to move to
// the new image now. slo holds, by device id, why a healthy device breaks
// the rollout's SLO gate (see sloVerdicts); such a device fails. It returns
// true when every batch has succeeded. A tripped threshold sets ro.State to
// RolloutReverted with a message.
func (s *Service) decide(ro *Rollout, svc *ScoringService, devs []Device, slo map[string]string, now time.Time, assign *[]string) bool {
	timeout := time.Duration(ro.Spec.DeviceTimeoutSeconds) * time.Second
	last := len(ro.BatchSize) - 1
	byID := map[string]*Device{}
	for i := range devs {
		d := &devs[i]
		byID[d.ID] = d
		if _, ok := ro.Devices[d.ID]; !ok {
			// Enrolled (or relabelled into the fleet) during the rollout:
			// it joins the last batch, or the current one if later.
			b := max(last, ro.Batch)
			ro.Devices[d.ID] = DeviceOutcome{Batch: b, State: DevicePending, Since: now}
			ro.BatchSize[min(b, last)]++
			ro.BatchDoneAt = nil
		}
	}
	// Observe.
	for id, o := range ro.Devices {
		d := byID[id]
		if d == nil || (o.State != DeviceUpdating && o.State != DeviceHealthy) {
			continue
		}
		st := reportedService(d, svc.Name)
		switch o.State {
		case DeviceUpdating:
			observed := d.Reported != nil && d.Reported.ObservedVersion >= o.Version
			switch {
			case st.Image == ro.ToRef && st.Phase == twin.Running && st.Healthy:
				o.State, o.Reason, o.Since = DeviceHealthy, "", now
			case observed && (st.Phase == twin.Failed || st.Phase == twin.RolledBack):
				o.State, o.Reason, o.Since = DeviceFailed, orDefault(st.Reason, "the device reported "+string(st.Phase)), now
			case now.Sub(o.Since) > timeout:
				why := "no healthy report within " + timeout.String()
				if !d.Online {
					why += " (device offline)"
				}
				o.State, o.Reason, o.Since = DeviceFailed, why, now
			}
		case DeviceHealthy:
			if st.Image != ro.ToRef || !st.Healthy || st.Phase != twin.Running {
				o.State, o.Reason, o.Since = DeviceFailed, "became unhealthy: "+orDefault(st.Reason, string(st.Phase)), now
			} else if why := slo[id]; why != "" {
				o.State, o.Reason, o.Since = DeviceFailed, why, now
			}
		}
		ro.Devices[id] = o
	}
	// The error threshold.
	failed := 0
	for _, o := range ro.Devices {
		if o.State == DeviceFailed {
			failed++
		}
	}
	if failed > 0 && float64(failed)/float64(len(ro.Devices)) > ro.Spec.ErrorThreshold {
		ro.State = RolloutReverted
		ro.Message = fmt.Sprintf("%d of %d devices failed (error threshold %.0f%%): reverting updated devices", failed, len(ro.Devices), ro.Spec.ErrorThreshold*100)
		return false
	}
	for ro.Batch <= last {
		var inBatch, healthy, done, updating int
		var pending []string
		for id, o := range ro.Devices {
			if o.Batch != ro.Batch || byID[id] == nil {
				continue // another batch, or a device that left the environment
			}
			inBatch++
			switch o.State {
			case DeviceHealthy:
				healthy++
				done++
			case DeviceFailed:
				done++
			case DeviceUpdating:
				updating++
			case DevicePending:
				pending = append(pending, id)
			}
		}
		sort.Strings(pending)
		if room := ro.Spec.MaxUnavailable; room > 0 {
			pending = pending[:min(len(pending), max(0, room-updating))]
		}
		for _, id := range pending {
			o := ro.Devices[id]
			o.State, o.Since = DeviceUpdating, now
			ro.Devices[id] = o
			*assign = append(*assign, id)
		}
		if done < inBatch {
			return false
		}
		if inBatch > 0 && float64(healthy)/float64(inBatch) < ro.Spec.SuccessThreshold {
			ro.State = RolloutReverted
			ro.Message = fmt.Sprintf("batch %d: %d of %d devices healthy, below the success threshold %.0f%%: reverting", ro.Batch+1, healthy, inBatch, ro.Spec.SuccessThreshold*100)
			return false
		}
		if ro.BatchDoneAt == nil {
			t := now
			ro.BatchDoneAt = &t
		}
		if now.Sub(*ro.BatchDoneAt) < time.Duration(ro.Spec.SoakSeconds)*time.Second {
			return false
		}
		ro.Batch++
		ro.BatchDoneAt = nil
	}
	return true
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func reportedService(d *Device, name string) twin.ServiceStatus {
	if d.Reported == nil {
		return twin.ServiceStatus{}
	}
	for _, st := range d.Reported.Services {
		if st.Name == name {
			return st
		}
	}
	return twin.ServiceStatus{}
}

// assign pins svc to ref on the given devices and recomputes their desired
// state, recording the version that carries the change.
func (s *Service) assign(tx Tx, svc *ScoringService, ids []string, ref string, ro *Rollout) ([]*twin.Desired, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	services, envs, err := accountServices(tx, svc.Subscription, svc.Account)
	if err != nil {
		return nil, err
	}
	var out []*twin.Desired
	for _, id := range ids {
		var d Device
		if err := tx.Get(DevicePath(svc.Subscription, svc.Account, id), &d); err != nil {
			if errclass.Is(err, errclass.NotFound) {
				continue
			}
			return nil, err
		}
		if d.Assignments == nil {
			d.Assignments = map[string]string{}
		}
		if ref == "" {
			delete(d.Assignments, svc.Name)
		} else {
			d.Assignments[svc.Name] = ref
		}
		if s.applyDesired(&d, services, envs) {
			out = append(out, d.Desired)
		}
		if ro != nil && d.Desired != nil {
			o := ro.Devices[id]
			o.Version = d.Desired.Version
			ro.Devices[id] = o
		}
		if err := tx.Put(d.Path, &d); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// revert puts every device the rollout touched back on the old image and
// ends the rollout in state.
func (s *Service) revert(tx Tx, ro *Rollout, state, message string) ([]*twin.Desired, error) {
	svcPath := ro.Path[:strings.LastIndex(ro.Path, "/rollouts/")]
	var svc ScoringService
	if err := tx.Get(svcPath, &svc); err != nil {
		return nil, err
	}
	var ids []string
	now := s.now()
	for id, o := range ro.Devices {
		switch o.State {
		case DeviceUpdating, DeviceHealthy, DeviceFailed:
			ids = append(ids, id)
			if o.State != DeviceFailed {
				o.Reason = ""
			}
			o.State, o.Since = DeviceReverted, now
			ro.Devices[id] = o
		}
	}
	sort.Strings(ids)
	publish, err := s.assign(tx, &svc, ids, "", nil)
	if err != nil {
		return nil, err
	}
	ro.State, ro.Message, ro.FinishedAt = state, message, &now
	ro.count()
	svc.Rollout = ""
	if err := tx.Put(svc.Path, &svc); err != nil {
		return nil, err
	}
	return publish, tx.Delete(activeKey(ro.Path))
}
