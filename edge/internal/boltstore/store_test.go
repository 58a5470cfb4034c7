package boltstore

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mlfleet/mlfleet/shared/errclass"
	"github.com/mlfleet/mlfleet/shared/twin"
	bolt "go.etcd.io/bbolt"
)

func open(t *testing.T, path string, opts Options) *Store {
	t.Helper()
	s, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestMigrateV1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	// A v1 file: desired/doc only, no meta version, no desired/version.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	doc, _ := json.Marshal(twin.Desired{Protocol: 1, Device: "d-1", Version: 7})
	if err := db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket(bDesired)
		if err != nil {
			return err
		}
		return b.Put(kDoc, doc)
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s := open(t, path, Options{})
	v, err := s.DesiredVersion()
	if err != nil || v != 7 {
		t.Fatalf("DesiredVersion after migration = %d, %v; want 7", v, err)
	}
	if ok, err := s.AcceptDesired(twin.Desired{Protocol: 1, Device: "d-1", Version: 7}); ok || err != nil {
		t.Fatalf("AcceptDesired(7) after migration = %v, %v; want refused as stale", ok, err)
	}
	var schema string
	_ = s.db.View(func(tx *bolt.Tx) error { schema = string(tx.Bucket(bMeta).Get(kVersion)); return nil })
	if schema != "2" {
		t.Fatalf("schema version = %q, want 2", schema)
	}
}

func TestRefuseNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s := open(t, path, Options{})
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bMeta).Put(kVersion, []byte("99")) }); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	_, err := Open(path, Options{})
	if !errclass.Is(err, errclass.FailedPrecondition) || !strings.Contains(err.Error(), "99") {
		t.Fatalf("Open newer schema: err = %v, want failed_precondition naming 99", err)
	}
}

func TestOpenTimeoutWhenLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	open(t, path, Options{})
	_, err := Open(path, Options{Timeout: 50 * time.Millisecond})
	if !errclass.Is(err, errclass.Unavailable) {
		t.Fatalf("second Open: err = %v, want unavailable", err)
	}
}

func TestDesiredVersions(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "state.db"), Options{})
	for _, tc := range []struct {
		version uint64
		want    bool
	}{{3, true}, {3, false}, {2, false}, {4, true}, {1, false}} {
		got, err := s.AcceptDesired(twin.Desired{Protocol: 1, Device: "d-1", Version: tc.version})
		if err != nil || got != tc.want {
			t.Fatalf("AcceptDesired(%d) = %v, %v; want %v", tc.version, got, err, tc.want)
		}
	}
	d, err := s.Desired()
	if err != nil || d.Version != 4 {
		t.Fatalf("Desired = %+v, %v; want version 4", d, err)
	}
}

func TestPersistenceAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	enr := Enrollment{DeviceID: "d-1", Credential: "mld_x", Cloud: "http://c", MQTT: MQTTCreds{URL: "tcp://b:1883", Username: "d-1", Password: "mld_x"}}
	st := ServiceState{Name: "iris", Image: "r/iris@sha256:" + strings.Repeat("a", 64), Instance: "iris-aaaa-1", Port: 4100, Phase: twin.Running, Since: time.Unix(100, 0).UTC()}
	steps := []error{
		s.PutEnrollment(enr),
		s.PutService(st),
		s.PutReported(twin.Reported{Protocol: 1, Device: "d-1", ObservedVersion: 5}),
	}
	for i, err := range steps {
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	if _, err := s.AcceptDesired(twin.Desired{Protocol: 1, Device: "d-1", Version: 5}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Enqueue(twin.Telemetry{Protocol: 1, Device: "d-1"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	s = open(t, path, Options{})
	if got, err := s.Enrollment(); err != nil || got != enr {
		t.Fatalf("Enrollment = %+v, %v", got, err)
	}
	if got, err := s.Service("iris"); err != nil || got.Instance != st.Instance || !got.Since.Equal(st.Since) {
		t.Fatalf("Service = %+v, %v", got, err)
	}
	if v, _ := s.DesiredVersion(); v != 5 {
		t.Fatalf("DesiredVersion = %d", v)
	}
	if r, _ := s.Reported(); r.ObservedVersion != 5 {
		t.Fatalf("Reported = %+v", r)
	}
	if q, _, _ := s.OutboxStats(); q != 1 {
		t.Fatalf("queued = %d", q)
	}
	b, err := s.Enqueue(twin.Telemetry{Protocol: 1, Device: "d-1"})
	if err != nil || b.Seq != 2 {
		t.Fatalf("seq after reopen = %d, %v; want 2", b.Seq, err)
	}
	if err := s.DeleteService("iris"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Service("iris"); !errclass.Is(err, errclass.NotFound) {
		t.Fatalf("deleted service: err = %v", err)
	}
}

func TestNotEnrolled(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "state.db"), Options{})
	if _, err := s.Enrollment(); !errclass.Is(err, errclass.NotFound) {
		t.Fatalf("Enrollment on empty store: %v", err)
	}
	if err := s.PutEnrollment(Enrollment{DeviceID: "Bad Id"}); errclass.FieldOf(err) != "deviceId" {
		t.Fatalf("PutEnrollment bad id: %v", err)
	}
}

func TestOutbox(t *testing.T) {
	tests := []struct {
		name        string
		limit       int
		enqueue     int
		ack         uint64
		wantSeqs    []uint64
		wantDropped uint64
	}{
		{"empty", 3, 0, 0, nil, 0},
		{"fifo under limit", 3, 2, 0, []uint64{1, 2}, 0},
		{"full drops oldest", 3, 5, 0, []uint64{3, 4, 5}, 2},
		{"ack prefix", 5, 4, 2, []uint64{3, 4}, 0},
		{"ack all", 5, 4, 9, nil, 0},
		{"ack dropped range", 2, 5, 3, []uint64{4, 5}, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t, filepath.Join(t.TempDir(), "state.db"), Options{OutboxLimit: tc.limit})
			var last twin.Telemetry
			for i := range tc.enqueue {
				var err error
				last, err = s.Enqueue(twin.Telemetry{Protocol: 1, Device: "d-1", Services: []twin.ServiceTelemetry{{Name: "s", Metrics: map[string]float64{"i": float64(i)}}}})
				if err != nil {
					t.Fatal(err)
				}
			}
			if tc.enqueue > 0 && last.Dropped != tc.wantDropped {
				t.Fatalf("last batch Dropped = %d, want %d", last.Dropped, tc.wantDropped)
			}
			if _, err := s.Ack(tc.ack); err != nil {
				t.Fatal(err)
			}
			got, err := s.Pending(0, 100)
			if err != nil {
				t.Fatal(err)
			}
			var seqs []uint64
			for _, b := range got {
				seqs = append(seqs, b.Seq)
				if b.Services[0].Metrics["i"] != float64(b.Seq-1) {
					t.Fatalf("batch %d carries metric %v", b.Seq, b.Services[0].Metrics["i"])
				}
			}
			if !equal(seqs, tc.wantSeqs) {
				t.Fatalf("pending seqs = %v, want %v", seqs, tc.wantSeqs)
			}
			q, dropped, err := s.OutboxStats()
			if err != nil || q != len(tc.wantSeqs) || dropped != tc.wantDropped {
				t.Fatalf("OutboxStats = %d, %d, %v", q, dropped, err)
			}
			if len(tc.wantSeqs) > 1 {
				rest, _ := s.Pending(tc.wantSeqs[0], 1)
				if len(rest) != 1 || rest[0].Seq != tc.wantSeqs[1] {
					t.Fatalf("Pending(after %d, 1) = %v", tc.wantSeqs[0], rest)
				}
			}
		})
	}
}

func equal(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func BenchmarkEnqueue(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "state.db"), Options{OutboxLimit: 256})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	for b.Loop() {
		if _, err := s.Enqueue(twin.Telemetry{Protocol: 1, Device: "d-1"}); err != nil {
			b.Fatal(err)
		}
	}
}
