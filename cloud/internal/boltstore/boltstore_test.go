package boltstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/mlfleet/mlfleet/cloud"
	"github.com/mlfleet/mlfleet/cloud/internal/boltstore"
	"github.com/mlfleet/mlfleet/shared/errclass"
)

// res is the resource stored by these tests: its path, so List results can
// be compared by path.
type res struct {
	Path string `json:"path"`
	N    int    `json:"n,omitempty"`
}

func openStore(t *testing.T) *boltstore.Store {
	t.Helper()
	s, err := boltstore.Open(filepath.Join(t.TempDir(), "state.db"), time.Second)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func update(t *testing.T, s cloud.Store, fn func(cloud.Tx) error) {
	t.Helper()
	if err := s.Update(context.Background(), fn); err != nil {
		t.Fatalf("Update: %v", err)
	}
}

func view(t *testing.T, s cloud.Store, fn func(cloud.Tx) error) {
	t.Helper()
	if err := s.View(context.Background(), fn); err != nil {
		t.Fatalf("View: %v", err)
	}
}

func putAll(t *testing.T, s cloud.Store, paths ...string) {
	t.Helper()
	update(t, s, func(tx cloud.Tx) error {
		for _, p := range paths {
			if err := tx.Put(p, res{Path: p}); err != nil {
				return err
			}
		}
		return nil
	})
}

// listAll pages through List with limit and returns the paths seen, failing
// if a page is larger than limit.
func listAll(t *testing.T, s cloud.Store, coll string, depth, limit int) []string {
	t.Helper()
	var out []string
	token := ""
	for pages := 0; ; pages++ {
		if pages > 1000 {
			t.Fatalf("List %s: no end after 1000 pages", coll)
		}
		n := 0
		view(t, s, func(tx cloud.Tx) error {
			next, err := tx.List(coll, depth, token, limit, func(raw []byte) error {
				var r res
				if err := json.Unmarshal(raw, &r); err != nil {
					return err
				}
				out = append(out, r.Path)
				n++
				return nil
			})
			token = next
			return err
		})
		if limit > 0 && n > limit {
			t.Fatalf("List %s limit %d: page of %d", coll, limit, n)
		}
		if token == "" {
			return out
		}
	}
}

func TestOpenMigrations(t *testing.T) {
	tests := []struct {
		name string
		// prepare makes the file before Open; nil = no file.
		prepare   func(t *testing.T, db *bolt.DB)
		wantClass errclass.Class // "" = Open succeeds
		wantMsg   string
		// keep: a path in tree that must survive the migration.
		keep string
	}{
		{name: "fresh file"},
		{
			name:    "version 0 without meta bucket",
			prepare: func(t *testing.T, db *bolt.DB) { writeV0(t, db, false) },
			keep:    "/subscriptions/old",
		},
		{
			name:    "version 0 with empty meta bucket",
			prepare: func(t *testing.T, db *bolt.DB) { writeV0(t, db, true) },
			keep:    "/subscriptions/old",
		},
		{
			name:      "version 99 refused",
			prepare:   func(t *testing.T, db *bolt.DB) { writeSchema(t, db, "99") },
			wantClass: errclass.FailedPrecondition,
			wantMsg:   "schema version 99 is newer than this program's 1",
		},
		{
			name:      "garbage version refused",
			prepare:   func(t *testing.T, db *bolt.DB) { writeSchema(t, db, "one") },
			wantClass: errclass.FailedPrecondition,
			wantMsg:   `schema version "one" is not a number`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.db")
			if tt.prepare != nil {
				db, err := bolt.Open(path, 0o600, nil)
				if err != nil {
					t.Fatal(err)
				}
				tt.prepare(t, db)
				if err := db.Close(); err != nil {
					t.Fatal(err)
				}
			}
			s, err := boltstore.Open(path, time.Second)
			if tt.wantClass != "" {
				if err == nil {
					s.Close()
					t.Fatalf("Open: no error, want %s", tt.wantClass)
				}
				if c := errclass.ClassOf(err); c != tt.wantClass {
					t.Errorf("Open: class %s, want %s (%v)", c, tt.wantClass, err)
				}
				if !strings.Contains(err.Error(), tt.wantMsg) || !strings.Contains(err.Error(), path) {
					t.Errorf("Open: error %q should contain %q and the path", err, tt.wantMsg)
				}
				// The refused file is left as it was, and the lock released.
				db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
				if err != nil {
					t.Fatalf("reopen refused file: %v", err)
				}
				defer db.Close()
				if err := db.View(func(tx *bolt.Tx) error {
					if tx.Bucket([]byte("tree")) != nil {
						return errors.New("refused file was migrated")
					}
					return nil
				}); err != nil {
					t.Error(err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			// Reopening is idempotent: same version, same data, no error.
			for i := 0; i < 3; i++ {
				if v, err := s.Version(); err != nil || v != boltstore.SchemaVersion {
					t.Fatalf("open %d: Version() = %d, %v; want %d", i, v, err, boltstore.SchemaVersion)
				}
				if tt.keep != "" {
					var r res
					view(t, s, func(tx cloud.Tx) error { return tx.Get(tt.keep, &r) })
					if r.Path != tt.keep {
						t.Fatalf("open %d: kept data %+v, want path %s", i, r, tt.keep)
					}
				}
				// Every bucket exists: each kind of write works.
				update(t, s, func(tx cloud.Tx) error {
					if _, err := tx.NextSeq("x"); err != nil {
						return err
					}
					if err := tx.AddRef("/a", "/b"); err != nil {
						return err
					}
					if err := tx.Grant(cloud.RoleAssignment{Scope: "/a", User: "u", Role: "owner"}); err != nil {
						return err
					}
					return tx.PutToken(cloud.Token{ID: "t", User: "u"})
				})
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				if err := s.Close(); err != nil {
					t.Fatalf("second Close: %v", err)
				}
				if s, err = boltstore.Open(path, time.Second); err != nil {
					t.Fatalf("reopen %d: %v", i, err)
				}
			}
			var n uint64
			update(t, s, func(tx cloud.Tx) (err error) { n, err = tx.NextSeq("x"); return err })
			if n != 4 {
				t.Errorf("NextSeq after 3 reopens = %d, want 4", n)
			}
			s.Close()
		})
	}
}

// writeV0 writes what a schema-0 program left: a tree bucket with data and
// no schema record.
func writeV0(t *testing.T, db *bolt.DB, emptyMeta bool) {
	t.Helper()
	err := db.Update(func(tx *bolt.Tx) error {
		if emptyMeta {
			if _, err := tx.CreateBucket([]byte("meta")); err != nil {
				return err
			}
		}
		b, err := tx.CreateBucket([]byte("tree"))
		if err != nil {
			return err
		}
		return b.Put([]byte("/subscriptions/old"), []byte(`{"path":"/subscriptions/old"}`))
	})
	if err != nil {
		t.Fatal(err)
	}
}

func writeSchema(t *testing.T, db *bolt.DB, v string) {
	t.Helper()
	err := db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("meta"))
		if err != nil {
			return err
		}
		return b.Put([]byte("schema"), []byte(v))
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestOpenLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := boltstore.Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s2, err := boltstore.Open(path, 50*time.Millisecond)
	if err == nil {
		s2.Close()
		t.Fatal("second Open of a locked file succeeded")
	}
	if c := errclass.ClassOf(err); c != errclass.Unavailable {
		t.Errorf("class %s, want %s (%v)", c, errclass.Unavailable, err)
	}
	if !errors.Is(err, bolt.ErrTimeout) || !strings.Contains(err.Error(), path) {
		t.Errorf("error %q should wrap bolt.ErrTimeout and name the path", err)
	}
}

func TestCanceledContext(t *testing.T) {
	s := openStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	called := false
	for _, run := range []func(context.Context, func(cloud.Tx) error) error{s.View, s.Update} {
		err := run(ctx, func(cloud.Tx) error { called = true; return nil })
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
	}
	if called {
		t.Error("fn ran with a canceled context")
	}
}

func TestCRUD(t *testing.T) {
	s := openStore(t)
	putAll(t, s, "/subscriptions/a", "/subscriptions/a/accounts/x", "/models/m/versions/2")
	tests := []struct {
		name      string
		op        func(tx cloud.Tx) error
		wantClass errclass.Class // "" = no error
	}{
		{"get existing", func(tx cloud.Tx) error { var r res; return tx.Get("/subscriptions/a", &r) }, ""},
		{"get missing", func(tx cloud.Tx) error { var r res; return tx.Get("/subscriptions/b", &r) }, errclass.NotFound},
		{"get a prefix of an existing path", func(tx cloud.Tx) error { var r res; return tx.Get("/subscriptions", &r) }, errclass.NotFound},
		{"get into wrong type", func(tx cloud.Tx) error { var n int; return tx.Get("/subscriptions/a", &n) }, errclass.Unknown},
		{"create new", func(tx cloud.Tx) error { return tx.Create("/subscriptions/b", res{Path: "/subscriptions/b"}) }, ""},
		{"create existing", func(tx cloud.Tx) error { return tx.Create("/subscriptions/a", res{}) }, errclass.Conflict},
		{"create existing version via equal number", func(tx cloud.Tx) error { return tx.Create("/models/m/versions/2", res{}) }, errclass.Conflict},
		{"put replaces", func(tx cloud.Tx) error { return tx.Put("/subscriptions/a", res{Path: "/subscriptions/a", N: 7}) }, ""},
		{"put unencodable", func(tx cloud.Tx) error { return tx.Put("/x", func() {}) }, errclass.Unknown},
		{"delete missing", func(tx cloud.Tx) error { return tx.Delete("/subscriptions/zzz") }, errclass.NotFound},
		{"delete existing", func(tx cloud.Tx) error { return tx.Delete("/models/m/versions/2") }, ""},
		{"delete again", func(tx cloud.Tx) error { return tx.Delete("/models/m/versions/2") }, errclass.NotFound},
		{"delete keeps children", func(tx cloud.Tx) error { return tx.Delete("/subscriptions/a") }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.Update(context.Background(), tt.op)
			switch {
			case tt.wantClass == "" && err != nil:
				t.Fatalf("err = %v, want nil", err)
			case tt.wantClass != "" && err == nil:
				t.Fatalf("no error, want %s", tt.wantClass)
			case tt.wantClass != "" && errclass.ClassOf(err) != tt.wantClass:
				t.Fatalf("class %s, want %s (%v)", errclass.ClassOf(err), tt.wantClass, err)
			}
		})
	}
	// The state left by the table.
	exists := map[string]bool{
		"/subscriptions/a":            false,
		"/subscriptions/a/accounts/x": true,
		"/subscriptions/b":            true,
		"/models/m/versions/2":        false,
		"/x":                          false,
	}
	view(t, s, func(tx cloud.Tx) error {
		for p, want := range exists {
			got, err := tx.Exists(p)
			if err != nil || got != want {
				t.Errorf("Exists(%s) = %v, %v; want %v", p, got, err, want)
			}
		}
		return nil
	})
	// Messages name the path.
	view(t, s, func(tx cloud.Tx) error {
		var r res
		if err := tx.Get("/nope/1", &r); err == nil || !strings.Contains(err.Error(), "/nope/1") {
			t.Errorf("Get error %v should name the path", err)
		}
		return nil
	})
	// A failing Update rolls back.
	err := s.Update(context.Background(), func(tx cloud.Tx) error {
		if err := tx.Put("/rolled/back", res{}); err != nil {
			return err
		}
		return errors.New("boom")
	})
	if err == nil || err.Error() != "boom" {
		t.Fatalf("Update err = %v, want boom", err)
	}
	view(t, s, func(tx cloud.Tx) error {
		if ok, _ := tx.Exists("/rolled/back"); ok {
			t.Error("write of a failed Update was committed")
		}
		return nil
	})
}

func TestList(t *testing.T) {
	s := openStore(t)
	putAll(t, s,
		"/subscriptions/a",
		"/subscriptions/a/accounts/x",
		"/subscriptions/a/accounts/x/workspaces/w",
		"/subscriptions/a-b",
		"/subscriptions/a-b/accounts/y",
		"/subscriptions/a.b",
		"/subscriptions/a0",
		"/subscriptions/a0/accounts/z",
		"/subscriptions/b",
		"/subscriptions0", // sibling of the collection with a common prefix
		"/subscriptionsx/a",
		"/models/m/versions/10",
		"/models/m/versions/2",
		"/models/m/versions/1",
		"/models/m/versions/2/files/f",
		"/models/m",
		"/models/n/versions/3",
		"/models/m2/versions/1",
		"/models/m/tags/1", // depth 3 but not a version: still listed at depth 3
	)
	// Orphan subtrees (children without their parent resource).
	putAll(t, s, "/subscriptions/c/accounts/q", "/subscriptions/d")
	tests := []struct {
		name  string
		coll  string
		depth int
		want  []string
	}{
		{"direct children only", "/subscriptions", 1, []string{
			"/subscriptions/a", "/subscriptions/a-b", "/subscriptions/a.b", "/subscriptions/a0",
			"/subscriptions/b", "/subscriptions/d",
		}},
		{"depth 2", "/subscriptions", 2, nil},
		// Key order is byte order of the whole key: "a-b/" sorts before "a/"
		// because '-' < '/'. (Per-segment order would need another key encoding.)
		{"depth 3", "/subscriptions", 3, []string{
			"/subscriptions/a-b/accounts/y", "/subscriptions/a/accounts/x",
			"/subscriptions/a0/accounts/z", "/subscriptions/c/accounts/q",
		}},
		{"nested collection", "/subscriptions/a/accounts", 1, []string{"/subscriptions/a/accounts/x"}},
		{"versions numerically", "/models/m/versions", 1, []string{
			"/models/m/versions/1", "/models/m/versions/2", "/models/m/versions/10",
		}},
		{"models depth 3", "/models", 3, []string{
			"/models/m/tags/1",
			"/models/m/versions/1", "/models/m/versions/2", "/models/m/versions/10",
			"/models/m2/versions/1",
			"/models/n/versions/3",
		}},
		{"empty collection", "/nothing", 1, nil},
	}
	for _, tt := range tests {
		for _, limit := range []int{0, 1, 2, 3, 100} {
			t.Run(fmt.Sprintf("%s/limit=%d", tt.name, limit), func(t *testing.T) {
				got := listAll(t, s, tt.coll, tt.depth, limit)
				if !reflect.DeepEqual(got, tt.want) {
					t.Errorf("List(%s, %d) =\n%q\nwant\n%q", tt.coll, tt.depth, got, tt.want)
				}
			})
		}
	}
	view(t, s, func(tx cloud.Tx) error {
		for _, coll := range []string{"/subscriptions", "/subscriptions/a", "/models/m/versions/2/files"} {
			if ok, err := tx.HasAny(coll); !ok || err != nil {
				t.Errorf("HasAny(%s) = %v, %v; want true", coll, ok, err)
			}
		}
		for _, coll := range []string{"/subscriptions/b", "/subscriptions/a/accounts/x/workspaces/w", "/nothing"} {
			if ok, err := tx.HasAny(coll); ok || err != nil {
				t.Errorf("HasAny(%s) = %v, %v; want false", coll, ok, err)
			}
		}
		return nil
	})
}

func TestListErrors(t *testing.T) {
	s := openStore(t)
	putAll(t, s, "/subscriptions/a", "/subscriptions/b", "/models/m")
	// A real token from /subscriptions, to use in the wrong collection.
	var subToken string
	view(t, s, func(tx cloud.Tx) (err error) {
		subToken, err = tx.List("/subscriptions", 1, "", 1, func([]byte) error { return nil })
		return err
	})
	if subToken == "" {
		t.Fatal("List with limit 1 of 2 items gave no next-page token")
	}
	tests := []struct {
		name      string
		coll      string
		depth     int
		token     string
		wantClass errclass.Class
		wantField string
	}{
		{"depth 0", "/subscriptions", 0, "", errclass.InvalidArgument, "depth"},
		{"negative depth", "/subscriptions", -1, "", errclass.InvalidArgument, "depth"},
		{"token not base64", "/subscriptions", 1, "!!!", errclass.InvalidArgument, "pageToken"},
		{"token of another collection", "/models", 1, subToken, errclass.InvalidArgument, "pageToken"},
		{"token outside any collection", "/subscriptions", 1, "Zm9v", errclass.InvalidArgument, "pageToken"},
		{"fn error", "/subscriptions", 1, "", errclass.Unknown, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.View(context.Background(), func(tx cloud.Tx) error {
				_, err := tx.List(tt.coll, tt.depth, tt.token, 10, func([]byte) error { return errors.New("stop") })
				return err
			})
			if err == nil {
				t.Fatal("no error")
			}
			if errclass.ClassOf(err) != tt.wantClass || errclass.FieldOf(err) != tt.wantField {
				t.Errorf("err %v: class %s field %q, want %s %q", err, errclass.ClassOf(err), errclass.FieldOf(err), tt.wantClass, tt.wantField)
			}
		})
	}
}

// TestListPagingStable checks that paging survives writes between pages:
// every item present throughout is seen exactly once.
func TestListPagingStable(t *testing.T) {
	s := openStore(t)
	for i := 1; i <= 25; i++ {
		putAll(t, s, fmt.Sprintf("/models/m/versions/%d", i))
	}
	seen := map[string]int{}
	token := ""
	for page := 0; ; page++ {
		view(t, s, func(tx cloud.Tx) (err error) {
			token, err = tx.List("/models/m/versions", 1, token, 4, func(raw []byte) error {
				var r res
				if err := json.Unmarshal(raw, &r); err != nil {
					return err
				}
				seen[r.Path]++
				return nil
			})
			return err
		})
		if token == "" {
			break
		}
		// Between pages: add an item far ahead and one behind, delete one behind.
		putAll(t, s, fmt.Sprintf("/models/m/versions/%d", 100+page), fmt.Sprintf("/models/m/versions/%d/x", page+1))
	}
	for i := 1; i <= 25; i++ {
		if p := fmt.Sprintf("/models/m/versions/%d", i); seen[p] != 1 {
			t.Errorf("%s seen %d times", p, seen[p])
		}
	}
	for p, n := range seen {
		if n != 1 {
			t.Errorf("%s seen %d times", p, n)
		}
	}
}

func TestDeleteTree(t *testing.T) {
	s := openStore(t)
	putAll(t, s,
		"/subscriptions/a",
		"/subscriptions/a/accounts/x",
		"/subscriptions/a/accounts/x/workspaces/w",
		"/subscriptions/ab",
		"/subscriptions/ab/accounts/y",
		"/subscriptions/a-b",
		"/subscriptions/b",
	)
	update(t, s, func(tx cloud.Tx) error {
		for _, r := range [][2]string{ // target, referrer
			{"/subscriptions/b", "/subscriptions/a/accounts/x"},  // from inside: removed
			{"/subscriptions/b", "/subscriptions/a"},             // from the root: removed
			{"/subscriptions/b", "/subscriptions/ab/accounts/y"}, // sibling: kept
			{"/subscriptions/b", "/subscriptions/a-b"},           // sibling: kept
			{"/subscriptions/a/accounts/x", "/subscriptions/b"},  // to inside: DeleteTree keeps it
		} {
			if err := tx.AddRef(r[0], r[1]); err != nil {
				return err
			}
		}
		for _, g := range []cloud.RoleAssignment{
			{Scope: "/subscriptions/a", User: "alice", Role: "owner"},
			{Scope: "/subscriptions/a/accounts/x", User: "bob", Role: "reader"},
			{Scope: "/subscriptions/ab", User: "alice", Role: "owner"},
			{Scope: "/subscriptions/a-b", User: "bob", Role: "owner"},
		} {
			if err := tx.Grant(g); err != nil {
				return err
			}
		}
		return nil
	})
	update(t, s, func(tx cloud.Tx) error { return tx.DeleteTree("/subscriptions/a") })
	// DeleteTree of something absent is fine.
	update(t, s, func(tx cloud.Tx) error { return tx.DeleteTree("/subscriptions/zzz") })

	view(t, s, func(tx cloud.Tx) error {
		for p, want := range map[string]bool{
			"/subscriptions/a":                         false,
			"/subscriptions/a/accounts/x":              false,
			"/subscriptions/a/accounts/x/workspaces/w": false,
			"/subscriptions/ab":                        true,
			"/subscriptions/ab/accounts/y":             true,
			"/subscriptions/a-b":                       true,
			"/subscriptions/b":                         true,
		} {
			if got, _ := tx.Exists(p); got != want {
				t.Errorf("Exists(%s) = %v, want %v", p, got, want)
			}
		}
		refs, err := tx.Referrers("/subscriptions/b", 0)
		if err != nil {
			return err
		}
		sort.Strings(refs)
		if want := []string{"/subscriptions/a-b", "/subscriptions/ab/accounts/y"}; !reflect.DeepEqual(refs, want) {
			t.Errorf("Referrers after DeleteTree = %q, want %q", refs, want)
		}
		if refs, _ := tx.Referrers("/subscriptions/a/accounts/x", 0); len(refs) != 1 {
			t.Errorf("reference to inside the tree: %q, want it kept", refs)
		}
		gs, err := tx.Grants("", "")
		if err != nil {
			return err
		}
		if got := scopes(gs); !reflect.DeepEqual(got, []string{"/subscriptions/a-b bob", "/subscriptions/ab alice"}) {
			t.Errorf("grants after DeleteTree = %q", got)
		}
		for _, u := range []string{"alice", "bob"} {
			gs, _ := tx.Grants(u, "")
			if len(gs) != 1 {
				t.Errorf("Grants(%s) = %v, want 1 (by-user index cleaned)", u, gs)
			}
		}
		return nil
	})
}

func scopes(gs []cloud.RoleAssignment) []string {
	var out []string
	for _, g := range gs {
		out = append(out, g.Scope+" "+g.User)
	}
	sort.Strings(out)
	return out
}

func TestRefs(t *testing.T) {
	s := openStore(t)
	update(t, s, func(tx cloud.Tx) error {
		for _, r := range [][2]string{
			{"/models/m/versions/1", "/manifests/a"},
			{"/models/m/versions/1", "/manifests/b"},
			{"/models/m/versions/2", "/manifests/c"},
			{"/models/m", "/manifests/d"},
			{"/models/mm/versions/1", "/manifests/e"}, // common prefix, not below /models/m
			{"/models/m-1", "/manifests/f"},
			{"/images/i", "/manifests/a"},
			{"/models/m/versions/1", "/manifests/a"}, // duplicate: recorded once
		} {
			if err := tx.AddRef(r[0], r[1]); err != nil {
				return err
			}
		}
		return nil
	})
	tests := []struct {
		target string
		limit  int
		want   []string
	}{
		{"/models/m/versions/1", 0, []string{"/manifests/a", "/manifests/b"}},
		{"/models/m", 0, []string{"/manifests/a", "/manifests/b", "/manifests/c", "/manifests/d"}},
		{"/models/m/versions", 0, []string{"/manifests/a", "/manifests/b", "/manifests/c"}},
		{"/models/mm", 0, []string{"/manifests/e"}},
		{"/models/m", 2, []string{"/manifests/d", "/manifests/a"}}, // the target itself first
		{"/models/none", 0, nil},
		{"/images/i", 0, []string{"/manifests/a"}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%d", tt.target, tt.limit), func(t *testing.T) {
			view(t, s, func(tx cloud.Tx) error {
				got, err := tx.Referrers(tt.target, tt.limit)
				if err != nil {
					return err
				}
				if tt.limit == 0 {
					sort.Strings(got)
				}
				if !reflect.DeepEqual(got, tt.want) {
					t.Errorf("Referrers(%s, %d) = %q, want %q", tt.target, tt.limit, got, tt.want)
				}
				return nil
			})
		})
	}
	// RemoveRefs forgets everything /manifests/a referred to, nothing else;
	// Delete of a resource does the same.
	putAll(t, s, "/manifests/b")
	update(t, s, func(tx cloud.Tx) error {
		if err := tx.RemoveRefs("/manifests/a"); err != nil {
			return err
		}
		if err := tx.RemoveRefs("/manifests/never"); err != nil {
			return err
		}
		return tx.Delete("/manifests/b")
	})
	view(t, s, func(tx cloud.Tx) error {
		got, _ := tx.Referrers("/models/m", 0)
		sort.Strings(got)
		if want := []string{"/manifests/c", "/manifests/d"}; !reflect.DeepEqual(got, want) {
			t.Errorf("after RemoveRefs: %q, want %q", got, want)
		}
		if got, _ := tx.Referrers("/images/i", 0); len(got) != 0 {
			t.Errorf("after RemoveRefs: /images/i referrers %q", got)
		}
		return nil
	})
}

func TestGrants(t *testing.T) {
	s := openStore(t)
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	all := []cloud.RoleAssignment{
		{Scope: "/subscriptions/a", User: "alice", Role: "owner", CreatedAt: at, CreatedBy: "root"},
		{Scope: "/subscriptions/a", User: "bob", Role: "reader", CreatedAt: at},
		{Scope: "/subscriptions/a/accounts/x", User: "alice", Role: "contributor", CreatedAt: at},
		{Scope: "/subscriptions/ab", User: "al", Role: "owner", CreatedAt: at},
	}
	update(t, s, func(tx cloud.Tx) error {
		for _, g := range all {
			if err := tx.Grant(g); err != nil {
				return err
			}
		}
		// Re-granting replaces the role.
		return tx.Grant(cloud.RoleAssignment{Scope: "/subscriptions/a", User: "bob", Role: "contributor", CreatedAt: at})
	})
	tests := []struct {
		user, scope string
		want        []string // scope user role
	}{
		{"", "", []string{
			"/subscriptions/a alice owner", "/subscriptions/a bob contributor",
			"/subscriptions/a/accounts/x alice contributor", "/subscriptions/ab al owner",
		}},
		{"alice", "", []string{"/subscriptions/a alice owner", "/subscriptions/a/accounts/x alice contributor"}},
		{"al", "", []string{"/subscriptions/ab al owner"}},
		{"", "/subscriptions/a", []string{"/subscriptions/a alice owner", "/subscriptions/a bob contributor"}},
		{"bob", "/subscriptions/a", []string{"/subscriptions/a bob contributor"}},
		{"bob", "/subscriptions/ab", nil},
		{"nobody", "", nil},
		{"", "/subscriptions", nil},
	}
	for _, tt := range tests {
		t.Run(tt.user+"@"+tt.scope, func(t *testing.T) {
			view(t, s, func(tx cloud.Tx) error {
				gs, err := tx.Grants(tt.user, tt.scope)
				if err != nil {
					return err
				}
				var got []string
				for _, g := range gs {
					got = append(got, g.Scope+" "+g.User+" "+string(g.Role))
					if !g.CreatedAt.Equal(at) {
						t.Errorf("CreatedAt %v not kept", g.CreatedAt)
					}
				}
				sort.Strings(got)
				if !reflect.DeepEqual(got, tt.want) {
					t.Errorf("Grants(%q, %q) = %q, want %q", tt.user, tt.scope, got, tt.want)
				}
				return nil
			})
		})
	}
	// Revoke.
	err := s.Update(context.Background(), func(tx cloud.Tx) error { return tx.Revoke("/subscriptions/a", "carol") })
	if errclass.ClassOf(err) != errclass.NotFound || !strings.Contains(err.Error(), "carol") {
		t.Errorf("Revoke of no grant: %v, want NotFound naming the user", err)
	}
	update(t, s, func(tx cloud.Tx) error { return tx.Revoke("/subscriptions/a", "alice") })
	view(t, s, func(tx cloud.Tx) error {
		gs, _ := tx.Grants("alice", "")
		if len(gs) != 1 || gs[0].Scope != "/subscriptions/a/accounts/x" {
			t.Errorf("after Revoke, alice has %v", gs)
		}
		gs, _ = tx.Grants("", "/subscriptions/a")
		if len(gs) != 1 || gs[0].User != "bob" {
			t.Errorf("after Revoke, scope has %v", gs)
		}
		return nil
	})
}

func TestTokens(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := boltstore.Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	exp := at.Add(24 * time.Hour)
	toks := []cloud.Token{
		{ID: "t1", User: "alice", Name: "ci", CreatedAt: at, ExpiresAt: &exp, Secret: "s3cret", Hash: "sha256:aa"},
		{ID: "t2", User: "alice", CreatedAt: at, Hash: "sha256:bb"},
		{ID: "t3", User: "bob", CreatedAt: at, Hash: "sha256:cc"},
	}
	update(t, s, func(tx cloud.Tx) error {
		for _, tok := range toks {
			if err := tx.PutToken(tok); err != nil {
				return err
			}
		}
		return nil
	})
	// Reopen: the hash is persisted in the file.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = boltstore.Open(path, time.Second); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	view(t, s, func(tx cloud.Tx) error {
		for _, want := range toks {
			got, err := tx.GetToken(want.ID)
			if err != nil {
				return err
			}
			want.Secret = "" // never stored
			if !reflect.DeepEqual(got, want) {
				t.Errorf("GetToken(%s) = %+v, want %+v", want.ID, got, want)
			}
		}
		if _, err := tx.GetToken("nope"); errclass.ClassOf(err) != errclass.NotFound {
			t.Errorf("GetToken(nope): %v, want NotFound", err)
		}
		for user, want := range map[string][]string{"alice": {"t1", "t2"}, "bob": {"t3"}, "carol": nil} {
			ts, err := tx.TokensOf(user)
			if err != nil {
				return err
			}
			var ids []string
			for _, tok := range ts {
				ids = append(ids, tok.ID)
				if tok.Hash == "" || tok.Secret != "" {
					t.Errorf("TokensOf(%s): token %s hash %q secret %q", user, tok.ID, tok.Hash, tok.Secret)
				}
			}
			sort.Strings(ids)
			if !reflect.DeepEqual(ids, want) {
				t.Errorf("TokensOf(%s) = %q, want %q", user, ids, want)
			}
		}
		return nil
	})
	update(t, s, func(tx cloud.Tx) error { return tx.DeleteToken("t1") })
	err = s.Update(context.Background(), func(tx cloud.Tx) error { return tx.DeleteToken("t1") })
	if errclass.ClassOf(err) != errclass.NotFound {
		t.Errorf("DeleteToken twice: %v, want NotFound", err)
	}
	view(t, s, func(tx cloud.Tx) error {
		if ts, _ := tx.TokensOf("alice"); len(ts) != 1 || ts[0].ID != "t2" {
			t.Errorf("after DeleteToken: %+v", ts)
		}
		return nil
	})
}

func TestNextSeq(t *testing.T) {
	s := openStore(t)
	var got []uint64
	update(t, s, func(tx cloud.Tx) error {
		for i := 0; i < 3; i++ {
			n, err := tx.NextSeq("runs")
			if err != nil {
				return err
			}
			got = append(got, n)
		}
		n, err := tx.NextSeq("other")
		got = append(got, n)
		return err
	})
	if want := []uint64{1, 2, 3, 1}; !reflect.DeepEqual(got, want) {
		t.Fatalf("NextSeq = %v, want %v", got, want)
	}
	// A rolled-back Update does not consume a value.
	_ = s.Update(context.Background(), func(tx cloud.Tx) error {
		if _, err := tx.NextSeq("runs"); err != nil {
			return err
		}
		return errors.New("roll back")
	})

	const workers = 50
	var wg sync.WaitGroup
	vals := make(chan uint64, workers)
	errs := make(chan error, workers)
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.Update(context.Background(), func(tx cloud.Tx) error {
				n, err := tx.NextSeq("runs")
				vals <- n
				return err
			})
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(vals)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	seen := map[uint64]bool{}
	for v := range vals {
		if seen[v] {
			t.Errorf("value %d handed out twice", v)
		}
		seen[v] = true
	}
	for v := uint64(4); v < 4+workers; v++ {
		if !seen[v] {
			t.Errorf("value %d missing: not monotonic without gaps", v)
		}
	}
}

// TestCopyOut reads values inside View, writes a lot (forcing bbolt to grow
// and remap its file), then uses the values: they must be unchanged.
func TestCopyOut(t *testing.T) {
	s := openStore(t)
	putAll(t, s, "/subscriptions/a", "/subscriptions/b")
	update(t, s, func(tx cloud.Tx) error {
		if err := tx.AddRef("/subscriptions/a", "/subscriptions/b"); err != nil {
			return err
		}
		if err := tx.Grant(cloud.RoleAssignment{Scope: "/subscriptions/a", User: "alice", Role: "owner"}); err != nil {
			return err
		}
		return tx.PutToken(cloud.Token{ID: "t1", User: "alice", Hash: "sha256:aa"})
	})
	var (
		raws  [][]byte
		refs  []string
		gs    []cloud.RoleAssignment
		toks  []cloud.Token
		token string
	)
	view(t, s, func(tx cloud.Tx) (err error) {
		if token, err = tx.List("/subscriptions", 1, "", 1, func(raw []byte) error {
			raws = append(raws, raw)
			return nil
		}); err != nil {
			return err
		}
		if refs, err = tx.Referrers("/subscriptions/a", 0); err != nil {
			return err
		}
		if gs, err = tx.Grants("alice", ""); err != nil {
			return err
		}
		toks, err = tx.TokensOf("alice")
		return err
	})
	// Overwrite and add plenty: pages are reused and the mmap grows.
	big := strings.Repeat("x", 64<<10)
	for i := 0; i < 8; i++ {
		update(t, s, func(tx cloud.Tx) error {
			for j := 0; j < 16; j++ {
				if err := tx.Put(fmt.Sprintf("/fill/%d/%d", i, j), res{Path: big}); err != nil {
					return err
				}
			}
			if err := tx.Put("/subscriptions/a", res{Path: "changed"}); err != nil {
				return err
			}
			if err := tx.RemoveRefs("/subscriptions/b"); err != nil {
				return err
			}
			return tx.Revoke("/subscriptions/a", "alice")
		})
		update(t, s, func(tx cloud.Tx) error {
			if err := tx.AddRef("/subscriptions/a", "/subscriptions/b"); err != nil {
				return err
			}
			return tx.Grant(cloud.RoleAssignment{Scope: "/subscriptions/a", User: "alice", Role: "reader"})
		})
	}
	if len(raws) != 1 || string(raws[0]) != `{"path":"/subscriptions/a"}` {
		t.Errorf("List value after writes: %q", raws)
	}
	if len(refs) != 1 || refs[0] != "/subscriptions/b" {
		t.Errorf("Referrers after writes: %q", refs)
	}
	if len(gs) != 1 || gs[0].Role != "owner" {
		t.Errorf("Grants after writes: %+v", gs)
	}
	if len(toks) != 1 || toks[0].Hash != "sha256:aa" {
		t.Errorf("TokensOf after writes: %+v", toks)
	}
	// The page token still works after the writes.
	got := 0
	view(t, s, func(tx cloud.Tx) error {
		_, err := tx.List("/subscriptions", 1, token, 0, func(raw []byte) error {
			got++
			if string(raw) != `{"path":"/subscriptions/b"}` {
				t.Errorf("second page: %s", raw)
			}
			return nil
		})
		return err
	})
	if got != 1 {
		t.Errorf("second page had %d items, want 1", got)
	}
}
