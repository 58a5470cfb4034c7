// Package twin is the device sync protocol between the cloud and mlfleet-edge
// over MQTT: the topic scheme and the documents sent on it.
//
// Every device has its own topics under mlfleet/v1/devices/<id>/ and the
// broker confines each device to them:
//
//	topic                    dir           QoS retained payload
//	.../desired              cloud->device 1   yes      Desired: what the device must run
//	.../desired/get          device->cloud 1   no       DesiredRequest: "send me my desired state"
//	.../reported             device->cloud 1   yes      Reported: what the device runs
//	.../presence             device->cloud 1   yes      Presence: online, or offline as the last will
//	.../telemetry            device->cloud 1   no       Telemetry: a batch of metrics and profiles
//	.../telemetry/ack        cloud->device 1   no       TelemetryAck: batches up to Seq are stored
//
// Desired documents carry a version that increases with every change for a
// device; a device applies a document only if its version is newer than the
// one it has persisted, so duplicates and stale retained messages are
// harmless. On every (re)connect a device subscribes first, then publishes a
// DesiredRequest and its Reported state.
//
// Documents are JSON, decoded strictly (unknown fields refused), bounded in
// size, and validated: a device may be compromised, and so may a broker.
package twin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"github.com/mlfleet/mlfleet/shared/errclass"
)

// Protocol is the protocol version this package speaks.
const Protocol = 1

// TopicRoot is the prefix of every device topic.
const TopicRoot = "mlfleet/v1/devices"

// MaxDocument bounds any document on the wire.
const MaxDocument = 256 << 10

// MaxTelemetry bounds a telemetry batch.
const MaxTelemetry = 1 << 20

var deviceIDRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// ValidDeviceID reports whether id can be a device id (and so a topic level).
func ValidDeviceID(id string) bool { return deviceIDRE.MatchString(id) }

// Kind names a device topic.
type Kind string

// The topic kinds.
const (
	KindDesired      Kind = "desired"
	KindDesiredGet   Kind = "desired/get"
	KindReported     Kind = "reported"
	KindPresence     Kind = "presence"
	KindTelemetry    Kind = "telemetry"
	KindTelemetryAck Kind = "telemetry/ack"
)

var kinds = []Kind{KindDesired, KindDesiredGet, KindReported, KindPresence, KindTelemetry, KindTelemetryAck}

// Topic returns the topic of kind k for device id.
func Topic(id string, k Kind) string { return TopicRoot + "/" + id + "/" + string(k) }

// Filter returns a subscription filter matching kind k of every device.
func Filter(k Kind) string { return TopicRoot + "/+/" + string(k) }

// ParseTopic splits a device topic into device id and kind.
func ParseTopic(topic string) (id string, k Kind, err error) {
	rest, ok := strings.CutPrefix(topic, TopicRoot+"/")
	if !ok {
		return "", "", errclass.Invalid("topic", "topic %q is not under %s/", topic, TopicRoot)
	}
	id, kind, ok := strings.Cut(rest, "/")
	if !ok || !ValidDeviceID(id) {
		return "", "", errclass.Invalid("topic", "topic %q has no valid device id", topic)
	}
	for _, k := range kinds {
		if string(k) == kind {
			return id, k, nil
		}
	}
	return "", "", errclass.Invalid("topic", "topic %q has unknown kind %q", topic, kind)
}

// DeviceMayPublish reports whether device id may publish to topic.
func DeviceMayPublish(id, topic string) bool {
	tid, k, err := ParseTopic(topic)
	if err != nil || tid != id {
		return false
	}
	switch k {
	case KindDesiredGet, KindReported, KindPresence, KindTelemetry:
		return true
	}
	return false
}

// DeviceMaySubscribe reports whether device id may subscribe to filter. Only
// exact topics of its own are allowed: no wildcards.
func DeviceMaySubscribe(id, filter string) bool {
	if strings.ContainsAny(filter, "+#") {
		return false
	}
	tid, k, err := ParseTopic(filter)
	if err != nil || tid != id {
		return false
	}
	return k == KindDesired || k == KindTelemetryAck
}

// Desired is the state the cloud wants a device in.
type Desired struct {
	Protocol int    `json:"protocol"`
	Device   string `json:"device"`
	// Version increases with every change of this device's desired state.
	Version  uint64        `json:"version"`
	IssuedAt time.Time     `json:"issuedAt"`
	Services []ServiceSpec `json:"services"`
}

// ServiceSpec is one scoring service the device must run.
type ServiceSpec struct {
	// Name is the service name: the gateway serves it at /services/<name>/.
	Name string `json:"name"`
	// Image is the image reference pinned by digest: <registry>/<repo>@sha256:<hex>.
	Image string `json:"image"`
	// Model is the model name served under /v2/models/<model>/ (default: Name).
	Model string `json:"model,omitempty"`
	// Port is the port the scorer listens on inside the container (default 8080).
	Port      int               `json:"port,omitempty"`
	Env       map[string]string `json:"env,omitempty"`
	Resources Resources         `json:"resources,omitzero"`
	Health    Probe             `json:"health,omitzero"`
	// Pull holds short-lived credentials scoped to this image's repository.
	Pull *PullAuth `json:"pull,omitempty"`
}

// Resources limits a service's container.
type Resources struct {
	MemoryBytes int64 `json:"memoryBytes,omitempty"`
	// CPUMillis is thousandths of a CPU (500 = half a core).
	CPUMillis int64 `json:"cpuMillis,omitempty"`
}

// Probe is how the device decides a service is healthy.
type Probe struct {
	Path             string `json:"path,omitempty"`             // default /healthz
	TimeoutMs        int    `json:"timeoutMs,omitempty"`        // per probe; default 1000
	PeriodMs         int    `json:"periodMs,omitempty"`         // default 5000
	StartTimeoutMs   int    `json:"startTimeoutMs,omitempty"`   // to become healthy after start; default 60000
	FailureThreshold int    `json:"failureThreshold,omitempty"` // consecutive failures; default 3
}

// PullAuth is how a device reaches a service's registry: a credential
// (both empty for an anonymous pull) valid until ExpiresAt (zero: no
// expiry), and whether the registry speaks plain HTTP. Images are pulled by
// digest, so their content is checked either way.
type PullAuth struct {
	Username  string    `json:"username"`
	Password  string    `json:"password"`
	ExpiresAt time.Time `json:"expiresAt"`
	PlainHTTP bool      `json:"plainHTTP,omitempty"`
}

// Phase is where a service is on a device.
type Phase string

// Service phases.
const (
	Pulling    Phase = "Pulling"
	Starting   Phase = "Starting"
	Running    Phase = "Running"
	Failed     Phase = "Failed"
	RolledBack Phase = "RolledBack"
	Removing   Phase = "Removing"
)

// Reported is what a device says it runs.
type Reported struct {
	Protocol int    `json:"protocol"`
	Device   string `json:"device"`
	// ObservedVersion is the newest desired version the device has accepted.
	ObservedVersion uint64          `json:"observedVersion"`
	Time            time.Time       `json:"time"`
	Agent           string          `json:"agent,omitempty"` // daemon version
	Services        []ServiceStatus `json:"services"`
}

// ServiceStatus is one service's state on a device.
type ServiceStatus struct {
	Name    string `json:"name"`
	Phase   Phase  `json:"phase"`
	Image   string `json:"image,omitempty"` // the image serving now
	Healthy bool   `json:"healthy"`
	// Reason explains Failed and RolledBack.
	Reason string    `json:"reason,omitempty"`
	Since  time.Time `json:"since"`
	// Wanted is the image the device tries to run, when it differs from Image.
	Wanted string `json:"wanted,omitempty"`
}

// DesiredRequest asks the cloud to (re)publish the device's desired state.
type DesiredRequest struct {
	Protocol int    `json:"protocol"`
	Device   string `json:"device"`
	// Have is the version the device holds; the cloud may skip publishing
	// when it has nothing newer.
	Have uint64 `json:"have"`
}

// Presence tells whether a device is connected.
type Presence struct {
	Protocol int       `json:"protocol"`
	Device   string    `json:"device"`
	Online   bool      `json:"online"`
	Time     time.Time `json:"time"`
}

// Telemetry is a batch of a device's metrics and drift profiles.
type Telemetry struct {
	Protocol int    `json:"protocol"`
	Device   string `json:"device"`
	// Seq numbers batches per device, from 1; the cloud acknowledges the
	// highest it stored.
	Seq uint64 `json:"seq"`
	// Dropped counts batches the device discarded (outbox full).
	Dropped uint64    `json:"dropped,omitempty"`
	Time    time.Time `json:"time"`
	// Services holds per-service payloads for the window.
	Services []ServiceTelemetry `json:"services"`
}

// ServiceTelemetry is one service's window of metrics and profile.
type ServiceTelemetry struct {
	Name  string `json:"name"`
	Image string `json:"image,omitempty"`
	// Metrics is the scorer's /metrics counters, by metric name.
	Metrics map[string]float64 `json:"metrics,omitempty"`
	// Profile is the scorer's /v1/profile answer, kept as JSON.
	Profile json.RawMessage `json:"profile,omitempty"`
}

// TelemetryAck acknowledges telemetry batches up to Seq.
type TelemetryAck struct {
	Protocol int    `json:"protocol"`
	Device   string `json:"device"`
	Seq      uint64 `json:"seq"`
}

// Decode parses a document strictly: size-bounded, unknown fields refused,
// no trailing data, then validated for device id. v must be a pointer to
// one of this package's document types.
func Decode(payload []byte, limit int, v interface{ validate(device string) error }, device string) error {
	if len(payload) > limit {
		return errclass.New(errclass.TooLarge, "", "document of %d bytes is larger than %d", len(payload), limit)
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errclass.Wrap(errclass.InvalidArgument, err, "malformed document")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errclass.Invalid("", "trailing data after the document")
	}
	return v.validate(device)
}

func header(protocol int, got, want string) error {
	if protocol != Protocol {
		return errclass.Invalid("protocol", "protocol %d is not %d", protocol, Protocol)
	}
	if !ValidDeviceID(got) {
		return errclass.Invalid("device", "device id %q is not valid", got)
	}
	if want != "" && got != want {
		return errclass.Invalid("device", "document is for device %q, not %q", got, want)
	}
	return nil
}

var (
	serviceNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	imageRE       = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9.\-:]*(/[a-z0-9]+([._-][a-z0-9]+)*)+@sha256:[0-9a-f]{64}$`)
	envKeyRE      = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)
)

// ValidImage reports whether ref is an image reference pinned by digest.
func ValidImage(ref string) bool { return len(ref) <= 512 && imageRE.MatchString(ref) }

func (d *Desired) validate(device string) error {
	if err := header(d.Protocol, d.Device, device); err != nil {
		return err
	}
	if d.Version == 0 {
		return errclass.Invalid("version", "version must be at least 1")
	}
	if len(d.Services) > 64 {
		return errclass.Invalid("services", "%d services; the limit is 64", len(d.Services))
	}
	seen := map[string]bool{}
	for i, s := range d.Services {
		if err := s.validate(); err != nil {
			var e *errclass.Error
			if errors.As(err, &e) {
				return errclass.Invalid(fmt.Sprintf("services[%d].%s", i, e.Field), "services[%d]: %s", i, e.Msg)
			}
			return err
		}
		if seen[s.Name] {
			return errclass.Invalid(fmt.Sprintf("services[%d].name", i), "service %q appears twice", s.Name)
		}
		seen[s.Name] = true
	}
	return nil
}

func (s *ServiceSpec) validate() error {
	switch {
	case !serviceNameRE.MatchString(s.Name):
		return errclass.Invalid("name", "service name %q is not valid", s.Name)
	case !ValidImage(s.Image):
		return errclass.Invalid("image", "image %q is not a reference pinned by sha256 digest", s.Image)
	case s.Model != "" && !serviceNameRE.MatchString(s.Model):
		return errclass.Invalid("model", "model name %q is not valid", s.Model)
	case s.Port < 0 || s.Port > 65535:
		return errclass.Invalid("port", "port %d is out of range", s.Port)
	case len(s.Env) > 128:
		return errclass.Invalid("env", "%d environment variables; the limit is 128", len(s.Env))
	case s.Resources.MemoryBytes < 0 || (s.Resources.MemoryBytes > 0 && s.Resources.MemoryBytes < 4<<20):
		return errclass.Invalid("resources.memoryBytes", "memory limit %d is below 4 MiB", s.Resources.MemoryBytes)
	case s.Resources.CPUMillis < 0 || s.Resources.CPUMillis > 1024000:
		return errclass.Invalid("resources.cpuMillis", "cpu limit %d is out of range", s.Resources.CPUMillis)
	case s.Health.Path != "" && (!strings.HasPrefix(s.Health.Path, "/") || len(s.Health.Path) > 256):
		return errclass.Invalid("health.path", "probe path %q must start with /", s.Health.Path)
	case s.Health.TimeoutMs < 0 || s.Health.PeriodMs < 0 || s.Health.StartTimeoutMs < 0 || s.Health.FailureThreshold < 0:
		return errclass.Invalid("health", "probe settings must not be negative")
	}
	for k, v := range s.Env {
		if !envKeyRE.MatchString(k) || len(v) > 4096 {
			return errclass.Invalid("env", "environment variable %q is not valid", k)
		}
	}
	return nil
}

// WithDefaults returns s with defaults filled in.
func (s ServiceSpec) WithDefaults() ServiceSpec {
	if s.Model == "" {
		s.Model = s.Name
	}
	if s.Port == 0 {
		s.Port = 8080
	}
	if s.Health.Path == "" {
		s.Health.Path = "/healthz"
	}
	if s.Health.TimeoutMs == 0 {
		s.Health.TimeoutMs = 1000
	}
	if s.Health.PeriodMs == 0 {
		s.Health.PeriodMs = 5000
	}
	if s.Health.StartTimeoutMs == 0 {
		s.Health.StartTimeoutMs = 60000
	}
	if s.Health.FailureThreshold == 0 {
		s.Health.FailureThreshold = 3
	}
	return s
}

func (r *Reported) validate(device string) error {
	if err := header(r.Protocol, r.Device, device); err != nil {
		return err
	}
	if len(r.Services) > 64 || len(r.Agent) > 64 {
		return errclass.Invalid("services", "too many services or agent string too long")
	}
	for i, s := range r.Services {
		switch {
		case !serviceNameRE.MatchString(s.Name):
			return errclass.Invalid(fmt.Sprintf("services[%d].name", i), "service name %q is not valid", s.Name)
		case !validPhase(s.Phase):
			return errclass.Invalid(fmt.Sprintf("services[%d].phase", i), "phase %q is not known", s.Phase)
		case s.Image != "" && !ValidImage(s.Image):
			return errclass.Invalid(fmt.Sprintf("services[%d].image", i), "image %q is not pinned by digest", s.Image)
		case s.Wanted != "" && !ValidImage(s.Wanted):
			return errclass.Invalid(fmt.Sprintf("services[%d].wanted", i), "image %q is not pinned by digest", s.Wanted)
		case len(s.Reason) > 2048:
			return errclass.Invalid(fmt.Sprintf("services[%d].reason", i), "reason is longer than 2048 bytes")
		}
	}
	return nil
}

func validPhase(p Phase) bool {
	switch p {
	case Pulling, Starting, Running, Failed, RolledBack, Removing:
		return true
	}
	return false
}

func (r *DesiredRequest) validate(device string) error { return header(r.Protocol, r.Device, device) }

func (p *Presence) validate(device string) error { return header(p.Protocol, p.Device, device) }

func (a *TelemetryAck) validate(device string) error { return header(a.Protocol, a.Device, device) }

func (t *Telemetry) validate(device string) error {
	if err := header(t.Protocol, t.Device, device); err != nil {
		return err
	}
	if t.Seq == 0 {
		return errclass.Invalid("seq", "seq must be at least 1")
	}
	if len(t.Services) > 64 {
		return errclass.Invalid("services", "%d services; the limit is 64", len(t.Services))
	}
	for i, s := range t.Services {
		if !serviceNameRE.MatchString(s.Name) {
			return errclass.Invalid(fmt.Sprintf("services[%d].name", i), "service name %q is not valid", s.Name)
		}
		if len(s.Metrics) > 1024 {
			return errclass.Invalid(fmt.Sprintf("services[%d].metrics", i), "%d metrics; the limit is 1024", len(s.Metrics))
		}
	}
	return nil
}

// Encode marshals a document.
func Encode(v any) ([]byte, error) { return json.Marshal(v) }
