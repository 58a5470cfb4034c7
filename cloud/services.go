package cloud

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/mlfleet/mlfleet/shared/errclass"
	"github.com/mlfleet/mlfleet/shared/manifest"
	"github.com/mlfleet/mlfleet/shared/twin"
)

// Environment is where services run: one device, or a fleet (every device of
// the account whose labels match the selector, evaluated live: devices
// enrolled later join).
type Environment struct {
	Meta
	Subscription string            `json:"subscription"`
	Account      string            `json:"account"`
	Name         string            `json:"name"`
	Device       string            `json:"device,omitempty"`
	Selector     map[string]string `json:"selector,omitempty"`
	Description  string            `json:"description,omitempty"`
}

// Includes reports whether d belongs to the environment.
func (e *Environment) Includes(d *Device) bool {
	if e.Device != "" {
		return d.ID == e.Device
	}
	return Matches(e.Selector, d.Labels)
}

// ScoringService is an image deployed to an environment as a REST endpoint
// (the seed's "service"). Its image changes only through rollouts.
type ScoringService struct {
	Meta
	Subscription string `json:"subscription"`
	Account      string `json:"account"`
	Name         string `json:"name"`
	Environment  string `json:"environment"`
	// Image is the image version every device of the environment runs once
	// no rollout is moving it ("name:version"), and its reference.
	Image          string `json:"image"`
	ImageReference string `json:"imageReference"`
	// Previous is the image before the last completed rollout (for rollback).
	Previous          string            `json:"previous,omitempty"`
	PreviousReference string            `json:"previousReference,omitempty"`
	Port              int               `json:"port,omitempty"`
	Env               map[string]string `json:"env,omitempty"`
	Resources         twin.Resources    `json:"resources,omitzero"`
	Health            twin.Probe        `json:"health,omitzero"`
	// Rollout is the id of the rollout moving the service now, if any.
	Rollout string `json:"rollout,omitempty"`
}

// EnvironmentPath and ServicePath are the paths of environments and services.
func EnvironmentPath(sub, acct, name string) string {
	return AccountPath(sub, acct) + "/environments/" + name
}

// ServicePath is the path of a service.
func ServicePath(sub, acct, name string) string { return AccountPath(sub, acct) + "/services/" + name }

// CreateEnvironment creates a single-device or fleet environment.
func (s *Service) CreateEnvironment(ctx context.Context, sub, acct string, in Environment) (*Environment, error) {
	if _, err := authorize(ctx, AccountPath(sub, acct), Contributor); err != nil {
		return nil, err
	}
	if err := manifest.CheckName("name", in.Name); err != nil {
		return nil, err
	}
	switch {
	case in.Device != "" && len(in.Selector) > 0:
		return nil, errclass.Invalid("selector", "an environment is one device or a label selector, not both")
	case in.Device != "" && !twin.ValidDeviceID(in.Device):
		return nil, errclass.Invalid("device", "device id %q is not valid", in.Device)
	case in.Device == "" && len(in.Selector) == 0:
		return nil, errclass.Invalid("selector", "give a device or a label selector (an empty selector would take every device: use e.g. {\"fleet\":\"all\"} labels)")
	}
	if err := checkLabels(in.Selector); err != nil {
		return nil, errclass.Invalid("selector", "%v", err)
	}
	if err := checkDescription(in.Description); err != nil {
		return nil, err
	}
	out := Environment{Meta: s.meta(ctx, EnvironmentPath(sub, acct, in.Name)), Subscription: sub, Account: acct, Name: in.Name,
		Device: in.Device, Selector: in.Selector, Description: in.Description}
	err := s.store.Update(ctx, func(tx Tx) error {
		if _, err := account(tx, sub, acct, ModelManagement); err != nil {
			return err
		}
		if in.Device != "" {
			if ok, err := tx.Exists(DevicePath(sub, acct, in.Device)); err != nil {
				return err
			} else if !ok {
				return errclass.Invalid("device", "device %q is not enrolled in account %q", in.Device, acct)
			}
		}
		return tx.Create(out.Path, &out)
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// ListEnvironments lists an account's environments.
func (s *Service) ListEnvironments(ctx context.Context, sub, acct string, o ListOptions) (Page[Environment], error) {
	if _, err := authorize(ctx, AccountPath(sub, acct), Reader); err != nil {
		return Page[Environment]{}, err
	}
	return list[Environment](ctx, s, AccountPath(sub, acct)+"/environments", 1, o, nil)
}

// GetEnvironment reads an environment.
func (s *Service) GetEnvironment(ctx context.Context, sub, acct, name string) (*Environment, error) {
	return get[Environment](ctx, s, EnvironmentPath(sub, acct, name), Reader)
}

// DeleteEnvironment deletes an environment no service uses.
func (s *Service) DeleteEnvironment(ctx context.Context, sub, acct, name string) error {
	return s.deleteUnused(ctx, EnvironmentPath(sub, acct, name), "environment "+name)
}

// members lists the devices of an environment, sorted by id.
func members(tx Tx, env *Environment) ([]Device, error) {
	var out []Device
	_, err := tx.List(AccountPath(env.Subscription, env.Account)+"/devices", 1, "", 0, func(raw []byte) error {
		var d Device
		if err := json.Unmarshal(raw, &d); err != nil {
			return err
		}
		if env.Includes(&d) {
			out = append(out, d)
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, err
}

// CreateServiceRequest creates a service and its first rollout.
type CreateServiceRequest struct {
	Name        string            `json:"name"`
	Environment string            `json:"environment"`
	Image       string            `json:"image"` // "name:version"
	Port        int               `json:"port,omitempty"`
	Env         map[string]string `json:"env,omitempty"`
	Resources   twin.Resources    `json:"resources,omitzero"`
	Health      twin.Probe        `json:"health,omitzero"`
	// Rollout tunes the first rollout (default: all devices in one batch).
	Rollout *RolloutSpec `json:"rollout,omitempty"`
}

// resolveImage finds an image version in tx and checks it belongs to the account.
func resolveImage(tx Tx, sub, acct, field, ref string) (*Image, error) {
	name, v, err := parseNameVersion(field, ref)
	if err != nil {
		return nil, err
	}
	var img Image
	if err := tx.Get(ImagePath(sub, acct, name, v), &img); err != nil {
		if errclass.Is(err, errclass.NotFound) {
			return nil, errclass.Invalid(field, "image %s version %d does not exist in account %q", name, v, acct)
		}
		return nil, err
	}
	return &img, nil
}

// CreateService creates a service and starts its first rollout, which moves
// every device of the environment to the image.
func (s *Service) CreateService(ctx context.Context, sub, acct string, in CreateServiceRequest) (*ScoringService, *Rollout, error) {
	if _, err := authorize(ctx, AccountPath(sub, acct), Contributor); err != nil {
		return nil, nil, err
	}
	if err := manifest.CheckName("name", in.Name); err != nil {
		return nil, nil, err
	}
	if err := checkSpec(twin.ServiceSpec{Name: in.Name, Image: "registry/check/spec@sha256:" + strings.Repeat("0", 64),
		Port: in.Port, Env: in.Env, Resources: in.Resources, Health: in.Health}); err != nil {
		return nil, nil, err
	}
	rs := RolloutSpec{}
	if in.Rollout != nil {
		rs = *in.Rollout
	}
	if err := rs.normalize(); err != nil {
		return nil, nil, err
	}
	var svc ScoringService
	var ro *Rollout
	err := s.store.Update(ctx, func(tx Tx) error {
		if _, err := account(tx, sub, acct, ModelManagement); err != nil {
			return err
		}
		var env Environment
		if err := tx.Get(EnvironmentPath(sub, acct, in.Environment), &env); err != nil {
			if errclass.Is(err, errclass.NotFound) {
				return errclass.Invalid("environment", "environment %q does not exist in account %q", in.Environment, acct)
			}
			return err
		}
		img, err := resolveImage(tx, sub, acct, "image", in.Image)
		if err != nil {
			return err
		}
		devs, err := members(tx, &env)
		if err != nil {
			return err
		}
		if len(devs) == 0 {
			return errclass.New(errclass.FailedPrecondition, "environment", "environment %q has no devices yet (enroll devices with matching labels first)", in.Environment)
		}
		svc = ScoringService{Meta: s.meta(ctx, ServicePath(sub, acct, in.Name)), Subscription: sub, Account: acct, Name: in.Name,
			Environment: in.Environment, Port: in.Port, Env: in.Env, Resources: in.Resources, Health: in.Health}
		if err := tx.Create(svc.Path, &svc); err != nil {
			return err
		}
		if err := tx.AddRef(env.Path, svc.Path); err != nil {
			return err
		}
		ro, err = s.startRollout(ctx, tx, &svc, img, rs, devs)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	s.kickRollouts()
	return &svc, ro, nil
}

// ListServices lists an account's services.
func (s *Service) ListServices(ctx context.Context, sub, acct string, o ListOptions) (Page[ScoringService], error) {
	if _, err := authorize(ctx, AccountPath(sub, acct), Reader); err != nil {
		return Page[ScoringService]{}, err
	}
	return list[ScoringService](ctx, s, AccountPath(sub, acct)+"/services", 1, o, nil)
}

// GetService reads a service.
func (s *Service) GetService(ctx context.Context, sub, acct, name string) (*ScoringService, error) {
	return get[ScoringService](ctx, s, ServicePath(sub, acct, name), Reader)
}

// DeleteService stops a service on every device and deletes it (and its
// rollout history).
func (s *Service) DeleteService(ctx context.Context, sub, acct, name string) error {
	path := ServicePath(sub, acct, name)
	if _, err := authorize(ctx, path, Contributor); err != nil {
		return err
	}
	var publish []*twin.Desired
	err := s.store.Update(ctx, func(tx Tx) error {
		var svc ScoringService
		if err := tx.Get(path, &svc); err != nil {
			return err
		}
		if err := tx.DeleteTree(path); err != nil {
			return err
		}
		var err error
		publish, err = s.recomputeAccount(tx, sub, acct, func(d *Device) { delete(d.Assignments, name) })
		return err
	})
	if err != nil {
		return err
	}
	s.publishAll(ctx, publish)
	return nil
}

// recomputeAccount recomputes the desired state of every device of an
// account (after edit runs on each), stores those that changed under a new
// version and returns them for publishing.
func (s *Service) recomputeAccount(tx Tx, sub, acct string, edit func(*Device)) ([]*twin.Desired, error) {
	services, envs, err := accountServices(tx, sub, acct)
	if err != nil {
		return nil, err
	}
	var devs []Device
	_, err = tx.List(AccountPath(sub, acct)+"/devices", 1, "", 0, func(raw []byte) error {
		var d Device
		if err := json.Unmarshal(raw, &d); err != nil {
			return err
		}
		devs = append(devs, d)
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out []*twin.Desired
	for i := range devs {
		d := &devs[i]
		if edit != nil {
			edit(d)
		}
		if changed := s.applyDesired(d, services, envs); changed {
			if err := tx.Put(d.Path, d); err != nil {
				return nil, err
			}
			out = append(out, d.Desired)
		}
	}
	return out, nil
}

func accountServices(tx Tx, sub, acct string) ([]ScoringService, map[string]*Environment, error) {
	var services []ScoringService
	_, err := tx.List(AccountPath(sub, acct)+"/services", 1, "", 0, func(raw []byte) error {
		var svc ScoringService
		if err := json.Unmarshal(raw, &svc); err != nil {
			return err
		}
		services = append(services, svc)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	envs := map[string]*Environment{}
	for _, svc := range services {
		if envs[svc.Environment] != nil {
			continue
		}
		var env Environment
		if err := tx.Get(EnvironmentPath(sub, acct, svc.Environment), &env); err != nil {
			return nil, nil, fmt.Errorf("service %s: %w", svc.Name, err)
		}
		envs[svc.Environment] = &env
	}
	return services, envs, nil
}

// applyDesired sets d.Desired from the account's services and d's
// assignments; it reports whether the services changed (then the version
// is bumped).
func (s *Service) applyDesired(d *Device, services []ScoringService, envs map[string]*Environment) bool {
	specs := []twin.ServiceSpec{}
	for _, svc := range services {
		env := envs[svc.Environment]
		if env == nil || !env.Includes(d) {
			continue
		}
		ref := svc.ImageReference
		if a, ok := d.Assignments[svc.Name]; ok {
			ref = a
		}
		if ref == "" {
			continue
		}
		specs = append(specs, twin.ServiceSpec{Name: svc.Name, Image: ref, Port: svc.Port, Env: svc.Env,
			Resources: svc.Resources, Health: svc.Health})
	}
	for _, direct := range d.Direct {
		clash := false
		for _, sp := range specs {
			clash = clash || sp.Name == direct.Name
		}
		if !clash {
			specs = append(specs, direct)
		}
	}
	sort.Slice(specs, func(i, j int) bool { return specs[i].Name < specs[j].Name })
	if d.Desired != nil && sameServices(d.Desired.Services, specs) {
		return false
	}
	if d.Desired == nil && len(specs) == 0 {
		return false
	}
	v := uint64(1)
	if d.Desired != nil {
		v = d.Desired.Version + 1
	}
	d.Desired = &twin.Desired{Protocol: twin.Protocol, Device: d.ID, Version: v, IssuedAt: s.now(), Services: specs}
	d.UpdatedAt = s.now()
	return true
}

func sameServices(a, b []twin.ServiceSpec) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func (s *Service) publishAll(ctx context.Context, ds []*twin.Desired) {
	for _, d := range ds {
		s.publishDesired(ctx, d)
	}
}

// checkSpec validates a service spec exactly as devices will.
func checkSpec(spec twin.ServiceSpec) error {
	d := twin.Desired{Protocol: twin.Protocol, Device: "d-check", Version: 1, Services: []twin.ServiceSpec{spec}}
	raw, err := twin.Encode(&d)
	if err != nil {
		return err
	}
	var back twin.Desired
	if err := twin.Decode(raw, twin.MaxDocument, &back, "d-check"); err != nil {
		if f := errclass.FieldOf(err); strings.HasPrefix(f, "services[0].") {
			return errclass.Invalid(strings.TrimPrefix(f, "services[0]."), "%v", err)
		}
		return err
	}
	return nil
}
