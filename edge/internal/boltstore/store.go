// Package boltstore keeps the state of an mlfleet-edge device in a bbolt file:
// its enrollment, the last desired document it accepted, what each service
// runs, the reported document, and the telemetry outbox.
//
// Schema (version 2):
//
//	meta/
//	    version              -> decimal schema version ("2")
//	identity/
//	    enrollment           -> JSON Enrollment
//	desired/
//	    doc                  -> JSON twin.Desired (the last accepted one)
//	    version              -> 8-byte big-endian copy of doc.version (added in v2)
//	services/
//	    <service name>       -> JSON ServiceState
//	reported/
//	    doc                  -> JSON twin.Reported
//	outbox/
//	    next                 -> 8-byte big-endian next telemetry seq (from 1)
//	    dropped              -> 8-byte big-endian count of batches dropped when full
//	    items/
//	        <8-byte BE seq>  -> JSON twin.Telemetry
//
// Version 1 kept only desired/doc; opening a v1 file migrates it in one
// transaction by copying the version out of the document.
//
// Every write is one fsynced bbolt transaction (NoSync is never set); values
// returned to callers are copies, never slices into the memory map.
package boltstore

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/mlfleet/mlfleet/shared/errclass"
	"github.com/mlfleet/mlfleet/shared/twin"
	bolt "go.etcd.io/bbolt"
)

// SchemaVersion is the schema this package writes.
const SchemaVersion = 2

// DefaultOutboxLimit bounds the telemetry outbox when Options.OutboxLimit is 0.
const DefaultOutboxLimit = 1024

var (
	bMeta     = []byte("meta")
	bIdentity = []byte("identity")
	bDesired  = []byte("desired")
	bServices = []byte("services")
	bReported = []byte("reported")
	bOutbox   = []byte("outbox")
	bItems    = []byte("items")

	kVersion    = []byte("version")
	kEnrollment = []byte("enrollment")
	kDoc        = []byte("doc")
	kNext       = []byte("next")
	kDropped    = []byte("dropped")
)

// Enrollment is the identity a device got from the cloud (docs/api.md,
// "Devices"). It holds a secret: it lives only in the store (mode 0600).
type Enrollment struct {
	DeviceID     string    `json:"deviceId"`
	Credential   string    `json:"credential"`
	Subscription string    `json:"subscription,omitempty"`
	Account      string    `json:"account,omitempty"`
	Cloud        string    `json:"cloud"`
	MQTT         MQTTCreds `json:"mqtt"`
	Registry     string    `json:"registry,omitempty"`
}

// MQTTCreds is where and as whom the device connects to the broker.
type MQTTCreds struct {
	URL      string `json:"url"`
	Username string `json:"username"`
	Password string `json:"password"`
}

// ServiceState is what the device knows of one service.
type ServiceState struct {
	Name string `json:"name"`
	// Spec is the spec the current instance runs (defaults filled in, no
	// pull credentials).
	Spec twin.ServiceSpec `json:"spec"`
	// Image, Instance and Port describe the instance serving now; empty when
	// nothing serves.
	Image    string `json:"image,omitempty"`
	Instance string `json:"instance,omitempty"`
	Port     int    `json:"port,omitempty"`
	// Previous is the image served before Image, kept for rollback.
	Previous string     `json:"previous,omitempty"`
	Phase    twin.Phase `json:"phase"`
	Reason   string     `json:"reason,omitempty"`
	Since    time.Time  `json:"since"`
	// Wanted is the image the device tries to run when it is not Image.
	Wanted string `json:"wanted,omitempty"`
	// FailedAt and Attempts pace retries of a failed Wanted image.
	FailedAt time.Time `json:"failedAt,omitzero"`
	Attempts int       `json:"attempts,omitempty"`
	// Restarts and RestartedAt pace restarts of a crashed instance.
	Restarts    int       `json:"restarts,omitempty"`
	RestartedAt time.Time `json:"restartedAt,omitzero"`
	// Generation numbers the instances made for this service.
	Generation uint64 `json:"generation,omitempty"`
}

// Options tunes Open.
type Options struct {
	// Timeout bounds the wait for the file lock (default 5 s).
	Timeout time.Duration
	// OutboxLimit bounds the telemetry outbox (default DefaultOutboxLimit).
	OutboxLimit int
}

// Store is an open state file. It is safe for concurrent use.
type Store struct {
	db    *bolt.DB
	limit int
}

// Open opens (creating or migrating) the state file at path.
func Open(path string, opts Options) (*Store, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	if opts.OutboxLimit <= 0 {
		opts.OutboxLimit = DefaultOutboxLimit
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("state dir for %s: %w", path, err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.Timeout})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, errclass.Wrap(errclass.Unavailable, err, "state file %s is locked by another process", path)
		}
		return nil, fmt.Errorf("open state file %s: %w", path, err)
	}
	s := &Store{db: db, limit: opts.OutboxLimit}
	if err := s.db.Update(migrate); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("state file %s: %w", path, err)
	}
	return s, nil
}

// Close closes the file. Closing twice is harmless.
func (s *Store) Close() error { return s.db.Close() }

// Path is the file's path.
func (s *Store) Path() string { return s.db.Path() }

func migrate(tx *bolt.Tx) error {
	meta, err := tx.CreateBucketIfNotExists(bMeta)
	if err != nil {
		return err
	}
	v := 0
	if raw := meta.Get(kVersion); raw != nil {
		v, err = strconv.Atoi(string(raw))
		if err != nil {
			return errclass.Invalid("meta.version", "schema version %q is not a number", raw)
		}
	} else if tx.Bucket(bDesired) != nil {
		v = 1 // v1 wrote no version key
	}
	if v > SchemaVersion {
		return errclass.New(errclass.FailedPrecondition, "meta.version", "schema version %d is newer than %d: downgrade not supported", v, SchemaVersion)
	}
	for _, name := range [][]byte{bIdentity, bDesired, bServices, bReported, bOutbox} {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	if _, err := tx.Bucket(bOutbox).CreateBucketIfNotExists(bItems); err != nil {
		return err
	}
	if v == 1 {
		if err := migrate1to2(tx); err != nil {
			return fmt.Errorf("migrate schema 1 to 2: %w", err)
		}
	}
	return meta.Put(kVersion, []byte(strconv.Itoa(SchemaVersion)))
}

// migrate1to2 adds desired/version, copied from the stored document.
func migrate1to2(tx *bolt.Tx) error {
	b := tx.Bucket(bDesired)
	raw := b.Get(kDoc)
	if raw == nil {
		return nil
	}
	var d twin.Desired
	if err := json.Unmarshal(raw, &d); err != nil {
		return errclass.Wrap(errclass.InvalidArgument, err, "desired/doc is not a desired document")
	}
	return b.Put(kVersion, u64(d.Version))
}

func u64(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}

func getU64(b *bolt.Bucket, k []byte) uint64 {
	raw := b.Get(k)
	if len(raw) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(raw)
}

func getJSON(b *bolt.Bucket, k []byte, v any) (bool, error) {
	raw := b.Get(k)
	if raw == nil {
		return false, nil
	}
	// json.Unmarshal copies everything it keeps, except RawMessage fields,
	// so decode from a private copy.
	if err := json.Unmarshal(bytes.Clone(raw), v); err != nil {
		return true, fmt.Errorf("decode %s: %w", k, err)
	}
	return true, nil
}

func putJSON(b *bolt.Bucket, k []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(k, raw)
}

// Enrollment returns the stored enrollment; a NotFound error if none.
func (s *Store) Enrollment() (Enrollment, error) {
	var e Enrollment
	var found bool
	err := s.db.View(func(tx *bolt.Tx) (err error) {
		found, err = getJSON(tx.Bucket(bIdentity), kEnrollment, &e)
		return err
	})
	if err != nil {
		return Enrollment{}, fmt.Errorf("read enrollment: %w", err)
	}
	if !found {
		return Enrollment{}, errclass.NotFoundf("device is not enrolled")
	}
	return e, nil
}

// PutEnrollment stores e, replacing any earlier one.
func (s *Store) PutEnrollment(e Enrollment) error {
	if !twin.ValidDeviceID(e.DeviceID) {
		return errclass.Invalid("deviceId", "device id %q is not valid", e.DeviceID)
	}
	return s.db.Update(func(tx *bolt.Tx) error { return putJSON(tx.Bucket(bIdentity), kEnrollment, e) })
}

// Desired returns the last accepted desired document (zero Version if none).
func (s *Store) Desired() (twin.Desired, error) {
	var d twin.Desired
	err := s.db.View(func(tx *bolt.Tx) error {
		_, err := getJSON(tx.Bucket(bDesired), kDoc, &d)
		return err
	})
	if err != nil {
		return twin.Desired{}, fmt.Errorf("read desired: %w", err)
	}
	return d, nil
}

// DesiredVersion returns the version of the last accepted desired document.
func (s *Store) DesiredVersion() (uint64, error) {
	var v uint64
	err := s.db.View(func(tx *bolt.Tx) error { v = getU64(tx.Bucket(bDesired), kVersion); return nil })
	return v, err
}

// AcceptDesired stores d if its version is newer than the stored one and
// reports whether it did. The check and the write are one transaction.
func (s *Store) AcceptDesired(d twin.Desired) (bool, error) {
	accepted := false
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bDesired)
		if d.Version <= getU64(b, kVersion) {
			return nil
		}
		if err := putJSON(b, kDoc, d); err != nil {
			return err
		}
		accepted = true
		return b.Put(kVersion, u64(d.Version))
	})
	if err != nil {
		return false, fmt.Errorf("store desired version %d: %w", d.Version, err)
	}
	return accepted, nil
}

// Services returns every service state, by name.
func (s *Store) Services() (map[string]ServiceState, error) {
	out := map[string]ServiceState{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bServices).ForEach(func(k, v []byte) error {
			var st ServiceState
			if err := json.Unmarshal(v, &st); err != nil {
				return fmt.Errorf("decode service %q: %w", k, err)
			}
			out[string(k)] = st
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read services: %w", err)
	}
	return out, nil
}

// Service returns one service state; a NotFound error if none.
func (s *Store) Service(name string) (ServiceState, error) {
	var st ServiceState
	var found bool
	err := s.db.View(func(tx *bolt.Tx) (err error) {
		found, err = getJSON(tx.Bucket(bServices), []byte(name), &st)
		return err
	})
	if err != nil {
		return ServiceState{}, fmt.Errorf("read service %q: %w", name, err)
	}
	if !found {
		return ServiceState{}, errclass.NotFoundf("service %q has no state", name)
	}
	return st, nil
}

// PutService stores st under st.Name.
func (s *Store) PutService(st ServiceState) error {
	if st.Name == "" {
		return errclass.Invalid("name", "service state has no name")
	}
	return s.db.Update(func(tx *bolt.Tx) error { return putJSON(tx.Bucket(bServices), []byte(st.Name), st) })
}

// DeleteService removes a service's state.
func (s *Store) DeleteService(name string) error {
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bServices).Delete([]byte(name)) })
}

// Reported returns the stored reported document (zero if none).
func (s *Store) Reported() (twin.Reported, error) {
	var r twin.Reported
	err := s.db.View(func(tx *bolt.Tx) error {
		_, err := getJSON(tx.Bucket(bReported), kDoc, &r)
		return err
	})
	if err != nil {
		return twin.Reported{}, fmt.Errorf("read reported: %w", err)
	}
	return r, nil
}

// PutReported stores r.
func (s *Store) PutReported(r twin.Reported) error {
	return s.db.Update(func(tx *bolt.Tx) error { return putJSON(tx.Bucket(bReported), kDoc, r) })
}

// Enqueue appends a telemetry batch to the outbox, giving it the next Seq
// and the running count of dropped batches. When the outbox is full the
// oldest batches are dropped (and counted) to make room. It returns the
// batch as stored.
func (s *Store) Enqueue(t twin.Telemetry) (twin.Telemetry, error) {
	err := s.db.Update(func(tx *bolt.Tx) error {
		ob := tx.Bucket(bOutbox)
		items := ob.Bucket(bItems)
		dropped := getU64(ob, kDropped)
		n := count(items)
		for ; n >= s.limit; n-- {
			k, _ := items.Cursor().First()
			if k == nil {
				break
			}
			if err := items.Delete(k); err != nil {
				return err
			}
			dropped++
		}
		seq := max(getU64(ob, kNext), 1)
		t.Seq, t.Dropped = seq, dropped
		if err := putJSON(items, u64(seq), t); err != nil {
			return err
		}
		if err := ob.Put(kDropped, u64(dropped)); err != nil {
			return err
		}
		return ob.Put(kNext, u64(seq+1))
	})
	if err != nil {
		return twin.Telemetry{}, fmt.Errorf("enqueue telemetry: %w", err)
	}
	return t, nil
}

// Pending returns up to n queued batches with Seq > after, oldest first.
func (s *Store) Pending(after uint64, n int) ([]twin.Telemetry, error) {
	var out []twin.Telemetry
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bOutbox).Bucket(bItems).Cursor()
		for k, v := c.Seek(u64(after + 1)); k != nil && len(out) < n; k, v = c.Next() {
			var t twin.Telemetry
			if err := json.Unmarshal(bytes.Clone(v), &t); err != nil {
				return fmt.Errorf("decode outbox item %x: %w", k, err)
			}
			out = append(out, t)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read outbox: %w", err)
	}
	return out, nil
}

// Ack deletes every queued batch with Seq <= seq and reports how many.
func (s *Store) Ack(seq uint64) (int, error) {
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		c := tx.Bucket(bOutbox).Bucket(bItems).Cursor()
		for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) <= seq; k, _ = c.First() {
			if err := c.Delete(); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("ack telemetry up to %d: %w", seq, err)
	}
	return n, nil
}

// OutboxStats reports the queued batch count and the dropped count.
func (s *Store) OutboxStats() (queued int, dropped uint64, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		ob := tx.Bucket(bOutbox)
		queued = count(ob.Bucket(bItems))
		dropped = getU64(ob, kDropped)
		return nil
	})
	return queued, dropped, err
}

// count walks b: Stats does not see a write transaction's own changes.
func count(b *bolt.Bucket) int {
	n := 0
	c := b.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		n++
	}
	return n
}
