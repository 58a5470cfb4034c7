package cloud

import (
	"context"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mlfleet/mlfleet/shared/errclass"
	"github.com/mlfleet/mlfleet/shared/twin"
)

// Device is an enrolled machine of a model management account.
type Device struct {
	Meta
	Subscription string            `json:"subscription"`
	Account      string            `json:"account"`
	ID           string            `json:"id"`
	Name         string            `json:"name,omitempty"` // what the device called itself at enrollment
	Labels       map[string]string `json:"labels,omitempty"`
	Online       bool              `json:"online"`
	LastSeen     *time.Time        `json:"lastSeen,omitempty"`
	// Desired is the state the cloud wants the device in (its version
	// increases with every change).
	Desired *twin.Desired `json:"desired,omitempty"`
	// Assignments pins services to image references on this device while a
	// rollout moves them (service name -> image reference).
	Assignments map[string]string `json:"assignments,omitempty"`
	// Direct are services deployed to this device alone (PUT .../desired),
	// beside those its environments' services bring.
	Direct []twin.ServiceSpec `json:"direct,omitempty"`
	// Reported is the device's last reported state.
	Reported *twin.Reported `json:"reported,omitempty"`
	// Telemetry counts what the device sent: batches stored, and dropped on the device.
	TelemetrySeq     uint64 `json:"telemetrySeq,omitempty"`
	TelemetryDropped uint64 `json:"telemetryDropped,omitempty"`
	// Rejected counts messages from the device refused as malformed, stale or not its own.
	Rejected uint64 `json:"rejected,omitempty"`
}

// EnrollmentToken lets one device join an account, once.
type EnrollmentToken struct {
	ID           string            `json:"id"`
	Subscription string            `json:"subscription"`
	Account      string            `json:"account"`
	Labels       map[string]string `json:"labels,omitempty"`
	CreatedAt    time.Time         `json:"createdAt"`
	CreatedBy    string            `json:"createdBy,omitempty"`
	ExpiresAt    time.Time         `json:"expiresAt"`
	// Token is set only in the answer to a create call.
	Token string `json:"token,omitempty"`
}

// enrollmentRecord is how a token is stored (at /enrollments/<id>).
type enrollmentRecord struct {
	EnrollmentToken
	Hash string `json:"hash"`
	Used bool   `json:"used"`
}

// deviceCred is a device's credential (at /devicecreds/<id>), found by id.
type deviceCred struct {
	Path string `json:"path"`
	Hash string `json:"hash"`
	// BrokerHash is the credential hashed for an external broker's password
	// file (mosquitto's PBKDF2-SHA512 format), made while the secret is known.
	BrokerHash string `json:"brokerHash,omitempty"`
}

// BrokerHash hashes a secret in mosquitto's password-file format:
// $7$<iterations>$<base64 salt>$<base64 PBKDF2-SHA512>.
func BrokerHash(secret string) (string, error) {
	salt := make([]byte, 12)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	const iterations = 101
	key, err := pbkdf2.Key(sha512.New, secret, salt, iterations, 64)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("$7$%d$%s$%s", iterations, base64.StdEncoding.EncodeToString(salt), base64.StdEncoding.EncodeToString(key)), nil
}

// BrokerCredentials lists every device id with its broker password hash,
// for an external broker's password file.
func (s *Service) BrokerCredentials(ctx context.Context) (map[string]string, error) {
	out := map[string]string{}
	err := s.store.View(ctx, func(tx Tx) error {
		_, err := tx.List("/devicecreds", 1, "", 0, func(raw []byte) error {
			var c deviceCred
			if err := json.Unmarshal(raw, &c); err != nil {
				return err
			}
			if c.BrokerHash != "" {
				out[c.Path[strings.LastIndex(c.Path, "/")+1:]] = c.BrokerHash
			}
			return nil
		})
		return err
	})
	return out, err
}

// BrokerAccounts is told when the set of device credentials changes (an
// external broker's password file must be rewritten).
type BrokerAccounts interface {
	DevicesChanged(ctx context.Context)
}

// SetBrokerAccounts registers who keeps an external broker's accounts.
func (s *Service) SetBrokerAccounts(b BrokerAccounts) {
	s.devMu.Lock()
	defer s.devMu.Unlock()
	s.accounts = b
}

func (s *Service) devicesChanged(ctx context.Context) {
	s.devMu.Lock()
	a := s.accounts
	s.devMu.Unlock()
	if a != nil {
		a.DevicesChanged(context.WithoutCancel(ctx))
	}
}

// Enrollment is what a device receives when it enrolls.
type Enrollment struct {
	DeviceID     string `json:"deviceId"`
	Credential   string `json:"credential"`
	Subscription string `json:"subscription"`
	Account      string `json:"account"`
	Cloud        string `json:"cloud,omitempty"`
	MQTT         struct {
		URL      string `json:"url"`
		Username string `json:"username"`
		Password string `json:"password"`
	} `json:"mqtt"`
	Registry string `json:"registry,omitempty"`
}

// EnrollRequest is a device's enrollment call.
type EnrollRequest struct {
	Token string `json:"token"`
	Name  string `json:"name,omitempty"`
	// DeviceID and Credential are set to re-enroll: keep the id, rotate the credential.
	DeviceID   string `json:"deviceId,omitempty"`
	Credential string `json:"credential,omitempty"`
}

// DeviceBus carries messages to devices (the MQTT side of the cloud).
type DeviceBus interface {
	PublishDesired(ctx context.Context, d twin.Desired) error
	PublishTelemetryAck(ctx context.Context, a twin.TelemetryAck) error
}

// Endpoints tells devices where the cloud's services are.
type Endpoints struct {
	Cloud, MQTT, Registry string
	// RegistryPlainHTTP: the embedded registry speaks HTTP (the cloud URL
	// is http://); devices are told so with every pull credential.
	RegistryPlainHTTP bool
}

// SetDeviceBus connects the service to the devices' message bus and tells
// enrolling devices where to find the cloud.
func (s *Service) SetDeviceBus(bus DeviceBus, ep Endpoints) {
	s.devMu.Lock()
	defer s.devMu.Unlock()
	s.bus, s.endpoints = bus, ep
}

func (s *Service) deviceBus() (DeviceBus, Endpoints) {
	s.devMu.Lock()
	defer s.devMu.Unlock()
	return s.bus, s.endpoints
}

// DevicePath is the path of a device.
func DevicePath(sub, acct, id string) string { return AccountPath(sub, acct) + "/devices/" + id }

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

const (
	enrollPrefix = "mle_"
	devicePrefix = "mld_"
)

// CreateEnrollmentToken makes a one-time token for a device to join a model
// management account with the given labels.
func (s *Service) CreateEnrollmentToken(ctx context.Context, sub, acct string, labels map[string]string, ttl time.Duration) (*EnrollmentToken, error) {
	p, err := authorize(ctx, AccountPath(sub, acct), Contributor)
	if err != nil {
		return nil, err
	}
	if err := checkLabels(labels); err != nil {
		return nil, err
	}
	if ttl == 0 {
		ttl = 24 * time.Hour
	}
	if ttl < 0 || ttl > 30*24*time.Hour {
		return nil, errclass.Invalid("expiresInHours", "enrollment token lifetime %s is not between 0 and 30 days", ttl)
	}
	id, err := randomHex(8)
	if err != nil {
		return nil, err
	}
	secret, err := randomHex(24)
	if err != nil {
		return nil, err
	}
	now := s.now()
	rec := enrollmentRecord{EnrollmentToken: EnrollmentToken{ID: id, Subscription: sub, Account: acct, Labels: labels,
		CreatedAt: now, CreatedBy: p.User.Name, ExpiresAt: now.Add(ttl)}}
	token := enrollPrefix + id + "_" + secret
	rec.Hash = hashSecret(token)
	err = s.store.Update(ctx, func(tx Tx) error {
		if _, err := account(tx, sub, acct, ModelManagement); err != nil {
			return err
		}
		return tx.Create("/enrollments/"+id, &rec)
	})
	if err != nil {
		return nil, err
	}
	out := rec.EnrollmentToken
	out.Token = token
	return &out, nil
}

func checkLabels(labels map[string]string) error {
	if len(labels) > 64 {
		return errclass.Invalid("labels", "%d labels; the limit is 64", len(labels))
	}
	for k, v := range labels {
		if !tagKeyRE.MatchString(k) {
			return errclass.Invalid("labels", "label key %q must be 1-63 letters, digits, '.', '_', '/', '-'", k)
		}
		if len(v) > 63 || strings.ContainsAny(v, " ,=\n\t") {
			return errclass.Invalid("labels."+k, "label %q value %q must be at most 63 characters without spaces, ',' or '='", k, v)
		}
	}
	return nil
}

func splitSecret(secret, prefix string) (id string, ok bool) {
	rest, ok := strings.CutPrefix(secret, prefix)
	if !ok {
		return "", false
	}
	id, _, ok = strings.Cut(rest, "_")
	return id, ok
}

// Enroll exchanges a one-time enrollment token for a device identity. With
// DeviceID and Credential of an existing device of the same account, the
// device keeps its id and gets a new credential.
func (s *Service) Enroll(ctx context.Context, req EnrollRequest) (*Enrollment, error) {
	bad := errclass.New(errclass.Unauthenticated, "token", "enrollment token is invalid, used or expired")
	id, ok := splitSecret(req.Token, enrollPrefix)
	if !ok {
		return nil, bad
	}
	if len(req.Name) > 253 {
		return nil, errclass.Invalid("name", "device name is longer than 253 characters")
	}
	secret, err := randomHex(24)
	if err != nil {
		return nil, err
	}
	var dev Device
	credential := ""
	err = s.store.Update(ctx, func(tx Tx) error {
		var rec enrollmentRecord
		if err := tx.Get("/enrollments/"+id, &rec); err != nil {
			return bad
		}
		if rec.Used || s.now().After(rec.ExpiresAt) || subtle.ConstantTimeCompare([]byte(rec.Hash), []byte(hashSecret(req.Token))) != 1 {
			return bad
		}
		if _, err := account(tx, rec.Subscription, rec.Account, ModelManagement); err != nil {
			return bad
		}
		rec.Used = true
		if err := tx.Put("/enrollments/"+id, &rec); err != nil {
			return err
		}
		devID := req.DeviceID
		if devID != "" {
			// Re-enroll: prove the current identity.
			var cred deviceCred
			if err := tx.Get("/devicecreds/"+devID, &cred); err != nil ||
				subtle.ConstantTimeCompare([]byte(cred.Hash), []byte(hashSecret(req.Credential))) != 1 ||
				cred.Path != DevicePath(rec.Subscription, rec.Account, devID) {
				return errclass.New(errclass.Unauthenticated, "credential", "device %q cannot re-enroll with that credential", devID)
			}
			if err := tx.Get(cred.Path, &dev); err != nil {
				return err
			}
		} else {
			h, err := randomHex(6)
			if err != nil {
				return err
			}
			devID = "d-" + h
			now := s.now()
			dev = Device{Meta: Meta{Path: DevicePath(rec.Subscription, rec.Account, devID), CreatedAt: now, UpdatedAt: now, CreatedBy: rec.CreatedBy},
				Subscription: rec.Subscription, Account: rec.Account, ID: devID}
		}
		if req.Name != "" {
			dev.Name = req.Name
		}
		if dev.Labels == nil {
			dev.Labels = map[string]string{}
		}
		for k, v := range rec.Labels {
			dev.Labels[k] = v
		}
		dev.UpdatedAt = s.now()
		// A device joining a fleet gets the services of its environments.
		if _, err := s.recomputeDevice(tx, &dev); err != nil {
			return err
		}
		if err := tx.Put(dev.Path, &dev); err != nil {
			return err
		}
		credential = devicePrefix + devID + "_" + secret
		bh, err := BrokerHash(credential)
		if err != nil {
			return err
		}
		return tx.Put("/devicecreds/"+devID, &deviceCred{Path: dev.Path, Hash: hashSecret(credential), BrokerHash: bh})
	})
	if err != nil {
		return nil, err
	}
	s.devicesChanged(ctx)
	_, ep := s.deviceBus()
	out := &Enrollment{DeviceID: dev.ID, Credential: credential, Subscription: dev.Subscription, Account: dev.Account,
		Cloud: ep.Cloud, Registry: ep.Registry}
	out.MQTT.URL, out.MQTT.Username, out.MQTT.Password = ep.MQTT, dev.ID, credential
	return out, nil
}

// AuthenticateDevice checks a device's credential (the broker calls it on
// every connect).
func (s *Service) AuthenticateDevice(ctx context.Context, id, credential string) error {
	bad := errclass.New(errclass.Unauthenticated, "", "device %q: bad credential", id)
	if !twin.ValidDeviceID(id) {
		return bad
	}
	return s.store.View(ctx, func(tx Tx) error {
		var cred deviceCred
		if err := tx.Get("/devicecreds/"+id, &cred); err != nil {
			return bad
		}
		if subtle.ConstantTimeCompare([]byte(cred.Hash), []byte(hashSecret(credential))) != 1 {
			return bad
		}
		return nil
	})
}

// ListDevices lists an account's devices, optionally only those with all the
// given labels.
func (s *Service) ListDevices(ctx context.Context, sub, acct string, selector map[string]string, o ListOptions) (Page[Device], error) {
	if _, err := authorize(ctx, AccountPath(sub, acct), Reader); err != nil {
		return Page[Device]{}, err
	}
	return list(ctx, s, AccountPath(sub, acct)+"/devices", 1, o, func(d *Device) bool { return Matches(selector, d.Labels) })
}

// Matches reports whether labels carry every key=value of selector.
func Matches(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// GetDevice reads a device.
func (s *Service) GetDevice(ctx context.Context, sub, acct, id string) (*Device, error) {
	return get[Device](ctx, s, DevicePath(sub, acct, id), Reader)
}

// UpdateDeviceLabels replaces a device's labels.
func (s *Service) UpdateDeviceLabels(ctx context.Context, sub, acct, id string, labels map[string]string) (*Device, error) {
	if err := checkLabels(labels); err != nil {
		return nil, err
	}
	var publish *twin.Desired
	dev, err := updateTx(ctx, s, DevicePath(sub, acct, id), func(tx Tx, d *Device) error {
		d.Labels = labels
		changed, err := s.recomputeDevice(tx, d)
		if changed {
			publish = d.Desired
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	s.publishDesired(ctx, publish)
	s.kickRollouts()
	return dev, nil
}

// recomputeDevice recomputes one device's desired state from its account's
// services (the caller stores the device).
func (s *Service) recomputeDevice(tx Tx, d *Device) (bool, error) {
	services, envs, err := accountServices(tx, d.Subscription, d.Account)
	if err != nil {
		return false, err
	}
	return s.applyDesired(d, services, envs), nil
}

// DeleteDevice removes a device; its credential stops working at once.
func (s *Service) DeleteDevice(ctx context.Context, sub, acct, id string) error {
	path := DevicePath(sub, acct, id)
	if _, err := authorize(ctx, path, Contributor); err != nil {
		return err
	}
	defer s.devicesChanged(ctx)
	return s.store.Update(ctx, func(tx Tx) error {
		if ok, err := tx.Exists(path); err != nil {
			return err
		} else if !ok {
			return notFound(path)
		}
		if err := tx.DeleteTree(path); err != nil {
			return err
		}
		if err := tx.Delete("/devicecreds/" + id); err != nil && !errclass.Is(err, errclass.NotFound) {
			return err
		}
		return nil
	})
}

// SetDesiredServices replaces the services deployed to this device alone
// (beside those of its environments, which win on a name clash) and
// publishes its desired state under the next version.
func (s *Service) SetDesiredServices(ctx context.Context, sub, acct, id string, services []twin.ServiceSpec) (*Device, error) {
	path := DevicePath(sub, acct, id)
	if _, err := authorize(ctx, path, Contributor); err != nil {
		return nil, err
	}
	if services == nil {
		services = []twin.ServiceSpec{}
	}
	sort.Slice(services, func(i, j int) bool { return services[i].Name < services[j].Name })
	// Validate as the device will: never publish what it must refuse.
	check := twin.Desired{Protocol: twin.Protocol, Device: id, Version: 1, Services: services}
	raw, err := twin.Encode(&check)
	if err != nil {
		return nil, err
	}
	if err := twin.Decode(raw, twin.MaxDocument, &check, id); err != nil {
		return nil, err
	}
	var dev Device
	err = s.store.Update(ctx, func(tx Tx) error {
		if err := tx.Get(path, &dev); err != nil {
			return err
		}
		dev.Direct = services
		changed, err := s.recomputeDevice(tx, &dev)
		if err != nil {
			return err
		}
		if !changed {
			// An explicit request always publishes a new version.
			v := uint64(1)
			if dev.Desired != nil {
				v = dev.Desired.Version + 1
			}
			dev.Desired = &twin.Desired{Protocol: twin.Protocol, Device: id, Version: v, IssuedAt: s.now(), Services: mergedServices(&dev)}
		}
		dev.UpdatedAt = s.now()
		return tx.Put(path, &dev)
	})
	if err != nil {
		return nil, err
	}
	s.publishDesired(ctx, dev.Desired)
	return &dev, nil
}

// mergedServices is what recomputeDevice left in d.Desired (environment
// services plus direct ones).
func mergedServices(d *Device) []twin.ServiceSpec {
	if d.Desired == nil {
		return []twin.ServiceSpec{}
	}
	return d.Desired.Services
}

func (s *Service) publishDesired(ctx context.Context, d *twin.Desired) {
	bus, ep := s.deviceBus()
	if bus == nil || d == nil {
		return
	}
	d = s.withPullCredentials(ctx, d, ep)
	// The store holds the truth: a publish that fails is retried by
	// RunDesiredRetries, and a device asks again on every reconnect.
	if err := bus.PublishDesired(context.WithoutCancel(ctx), *d); err != nil {
		slog.Debug("publish desired state; will retry", "device", d.Device, "version", d.Version, "err", err)
		s.devMu.Lock()
		if s.unpublished == nil {
			s.unpublished = map[string]bool{}
		}
		s.unpublished[d.Device] = true
		s.devMu.Unlock()
	}
}

// RunDesiredRetries republishes, every interval, the desired state of the
// devices whose last publish failed (broker down, client reconnecting),
// until ctx ends.
func (s *Service) RunDesiredRetries(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		s.devMu.Lock()
		ids := s.unpublished
		s.unpublished = nil
		s.devMu.Unlock()
		if len(ids) > 0 {
			s.republish(ctx, func(id string) bool { return ids[id] })
		}
	}
}

// RepublishAllDesired publishes every device's desired state again (the
// cloud's MQTT client calls it on each connect: a broker that restarted may
// have lost its retained messages, and publishes may have failed meanwhile).
func (s *Service) RepublishAllDesired(ctx context.Context) {
	s.republish(ctx, func(string) bool { return true })
}

func (s *Service) republish(ctx context.Context, want func(id string) bool) {
	var desired []*twin.Desired
	err := s.store.View(ctx, func(tx Tx) error {
		var paths []string
		_, err := tx.List("/devicecreds", 1, "", 0, func(raw []byte) error {
			var c deviceCred
			if err := json.Unmarshal(raw, &c); err != nil {
				return err
			}
			if want(c.Path[strings.LastIndex(c.Path, "/")+1:]) {
				paths = append(paths, c.Path)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, p := range paths {
			var d Device
			if err := tx.Get(p, &d); err != nil {
				continue
			}
			if d.Desired != nil {
				desired = append(desired, d.Desired)
			}
		}
		return nil
	})
	if err != nil {
		slog.Warn("republish desired states", "err", err)
		return
	}
	s.publishAll(ctx, desired)
}

// pullTokenTTL is how long the registry credentials in a published desired
// state stay valid (a device pulls right after it gets them; retries of a
// failing pull may take a while).
const pullTokenTTL = 24 * time.Hour

// withPullCredentials returns a copy of d whose services say how to reach
// their registry: pulling from the cloud's own registry, a fresh pull token
// scoped to the repository; from one of the account's external registries,
// its pull credential (never the push one). Stored desired states never hold credentials; they
// are made at publish time.
func (s *Service) withPullCredentials(ctx context.Context, d *twin.Desired, ep Endpoints) *twin.Desired {
	out := *d
	out.Services = append([]twin.ServiceSpec(nil), d.Services...)
	var external []ExternalRegistry // the device's account's, read once if needed
	readExternal := sync.OnceFunc(func() { external = s.deviceRegistries(ctx, d.Device) })
	for i, svc := range out.Services {
		if svc.Pull != nil {
			continue
		}
		if rest, ok := strings.CutPrefix(svc.Image, ep.Registry+"/"); ok && ep.Registry != "" {
			repo, _, _ := strings.Cut(rest, "@")
			tok, exp, err := s.PullToken(ctx, repo, d.Device, pullTokenTTL)
			if err != nil {
				slog.Warn("make pull token", "device", d.Device, "repo", repo, "err", err)
				continue
			}
			out.Services[i].Pull = &twin.PullAuth{Username: d.Device, Password: tok, ExpiresAt: exp, PlainHTTP: ep.RegistryPlainHTTP}
			continue
		}
		readExternal()
		for _, r := range external {
			prefix := r.Host + "/"
			if r.Prefix != "" {
				prefix += r.Prefix + "/"
			}
			if strings.HasPrefix(svc.Image, prefix) && (r.HasPullPassword || r.PullUsername != "" || r.Insecure) {
				out.Services[i].Pull = &twin.PullAuth{Username: r.PullUsername, Password: r.PullPassword, PlainHTTP: r.Insecure}
				break
			}
		}
	}
	return &out
}

// deviceRegistries returns the external registries of the device's account,
// passwords included (nil when there are none or on error).
func (s *Service) deviceRegistries(ctx context.Context, device string) []ExternalRegistry {
	var out []ExternalRegistry
	err := s.store.View(ctx, func(tx Tx) error {
		path, err := s.deviceByID(tx, device)
		if err != nil {
			return err
		}
		acct, _, _ := strings.Cut(path, "/devices/")
		_, err = tx.List(acct+"/registries", 1, "", 1000, func(raw []byte) error {
			var r ExternalRegistry
			if err := json.Unmarshal(raw, &r); err != nil {
				return err
			}
			out = append(out, r)
			return nil
		})
		return err
	})
	if err != nil {
		slog.Warn("read the external registries of a device's account", "device", device, "err", err)
		return nil
	}
	return out
}

// deviceByID finds a device's path from its id.
func (s *Service) deviceByID(tx Tx, id string) (string, error) {
	var cred deviceCred
	if err := tx.Get("/devicecreds/"+id, &cred); err != nil {
		return "", err
	}
	return cred.Path, nil
}

// ErrRejected marks a device message that was refused (and counted).
var ErrRejected = errors.New("device message rejected")

// DeviceMessage is one MQTT message from a device topic.
type DeviceMessage struct {
	Topic   string
	Payload []byte
}

// decodedMessage is a device message after strict decoding.
type decodedMessage struct {
	id        string
	kind      twin.Kind
	err       error // the payload was refused
	reported  twin.Reported
	presence  twin.Presence
	telemetry twin.Telemetry
}

func decodeDeviceMessage(m DeviceMessage) (*decodedMessage, error) {
	id, kind, err := twin.ParseTopic(m.Topic)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRejected, err)
	}
	d := &decodedMessage{id: id, kind: kind}
	switch kind {
	case twin.KindReported:
		d.err = twin.Decode(m.Payload, twin.MaxDocument, &d.reported, id)
	case twin.KindPresence:
		d.err = twin.Decode(m.Payload, twin.MaxDocument, &d.presence, id)
	case twin.KindDesiredGet:
		var request twin.DesiredRequest
		d.err = twin.Decode(m.Payload, twin.MaxDocument, &request, id)
	case twin.KindTelemetry:
		d.err = twin.Decode(m.Payload, twin.MaxTelemetry, &d.telemetry, id)
	default:
		return nil, nil // the cloud's own topics
	}
	return d, nil
}

// HandleDeviceMessage ingests one message from a device topic.
func (s *Service) HandleDeviceMessage(ctx context.Context, topic string, payload []byte) error {
	return s.HandleDeviceMessages(ctx, []DeviceMessage{{Topic: topic, Payload: payload}})[0]
}

// HandleDeviceMessages ingests messages from device topics (reported state,
// presence, desired-state requests, telemetry) in one transaction: a fleet
// reporting at once costs one disk sync per batch, not per message. Bad
// messages are counted on their device and refused; the result holds one
// error (or nil) per message.
func (s *Service) HandleDeviceMessages(ctx context.Context, msgs []DeviceMessage) []error {
	errs := make([]error, len(msgs))
	decoded := make([]*decodedMessage, len(msgs))
	for i, m := range msgs {
		decoded[i], errs[i] = decodeDeviceMessage(m)
	}
	var publish []*twin.Desired
	var acks []twin.TelemetryAck
	kick := false
	uerr := s.store.Update(ctx, func(tx Tx) error {
		publish, acks, kick = nil, nil, false
		devs := map[string]*Device{} // the batch's devices, written once at the end
		paths := map[string]string{}
		for i, d := range decoded {
			if d == nil {
				continue
			}
			dev := devs[d.id]
			if dev == nil {
				path, lerr := s.deviceByID(tx, d.id)
				if lerr != nil {
					errs[i] = fmt.Errorf("%w: unknown device %q", ErrRejected, d.id)
					continue
				}
				dev = &Device{}
				if err := tx.Get(path, dev); err != nil {
					return err
				}
				devs[d.id], paths[d.id] = dev, path
			}
			now := s.now()
			if d.err != nil {
				dev.Rejected++
				errs[i] = fmt.Errorf("%w: %v", ErrRejected, d.err)
				continue
			}
			dev.LastSeen = &now
			switch d.kind {
			case twin.KindReported:
				kick = true
				if dev.Reported != nil && d.reported.Time.Before(dev.Reported.Time) {
					dev.Rejected++ // an older report arriving late
					break
				}
				r := d.reported
				dev.Reported = &r
				dev.Online = true
			case twin.KindPresence:
				dev.Online = d.presence.Online
			case twin.KindDesiredGet:
				dev.Online = true
				if dev.Desired != nil && dev.Desired.Version > 0 {
					publish = append(publish, dev.Desired)
				}
			case twin.KindTelemetry:
				dev.Online = true
				if d.telemetry.Seq > dev.TelemetrySeq {
					dev.TelemetrySeq = d.telemetry.Seq
					dev.TelemetryDropped = d.telemetry.Dropped
					if err := s.storeTelemetry(tx, paths[d.id], &d.telemetry); err != nil {
						return err
					}
				}
				// Acknowledge duplicates too: the device may have missed the ack.
				acks = append(acks, twin.TelemetryAck{Protocol: twin.Protocol, Device: d.id, Seq: dev.TelemetrySeq})
			}
			dev.UpdatedAt = now
		}
		for id, dev := range devs {
			if err := tx.Put(paths[id], dev); err != nil {
				return err
			}
		}
		return nil
	})
	if uerr != nil {
		for i := range errs {
			if errs[i] == nil && decoded[i] != nil {
				errs[i] = uerr
			}
		}
		return errs
	}
	bus, _ := s.deviceBus()
	for _, a := range acks {
		if bus == nil {
			break
		}
		if err := bus.PublishTelemetryAck(ctx, a); err != nil {
			slog.Warn("publish telemetry ack", "device", a.Device, "err", err)
		}
	}
	s.publishAll(ctx, publish)
	if kick {
		s.kickRollouts()
	}
	return errs
}

// storeTelemetry keeps a device's telemetry batch for the drift and metrics
// views (one record per batch, under the device).
func (s *Service) storeTelemetry(tx Tx, devicePath string, t *twin.Telemetry) error {
	if t.Seq > keepTelemetry {
		if err := tx.Delete(telemetryPath(devicePath, t.Seq-keepTelemetry)); err != nil && !errclass.Is(err, errclass.NotFound) {
			return err
		}
	}
	packed, err := packTelemetry(t)
	if err != nil {
		return err
	}
	return tx.Put(telemetryPath(devicePath, t.Seq), packed)
}

// keepTelemetry is how many telemetry batches the cloud keeps per device:
// two hours at the daemon's default 60 s window, what rollout SLO gates
// read. A batch with two services (their counter and latency-bucket series
// and drift profiles) is 10-20 kB of JSON, kept gzipped.
const keepTelemetry = 120
