// Package boltstore implements cloud.Store on a bbolt file.
//
// Schema (version 1):
//
//	meta/
//	  "schema"          -> "1" (decimal schema version)
//	tree/
//	  <key(path)>       -> JSON resource; key(path) is the path with each
//	                       version (the segment after "versions") zero-padded
//	                       to 10 digits, so that versions sort numerically
//	seq/
//	  <name>            -> uint64 big-endian counter
//	refs/
//	  <target> 0x00 <referrer>  -> ""      (referrer uses target)
//	refsby/
//	  <referrer> 0x00 <target>  -> ""      (the same, indexed by referrer)
//	grants/
//	  <scope> 0x00 <user>       -> JSON cloud.RoleAssignment
//	grantsby/
//	  <user> 0x00 <scope>       -> ""
//	tokens/
//	  <id>              -> JSON token record (with the secret's hash)
//
// Migrations run at Open, one function per version step, inside one
// transaction; a file from a newer mlfleet is refused.
package boltstore

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/mlfleet/mlfleet/cloud"
	"github.com/mlfleet/mlfleet/shared/errclass"
)

// SchemaVersion is the schema this code reads and writes.
const SchemaVersion = 1

var (
	bMeta     = []byte("meta")
	bTree     = []byte("tree")
	bSeq      = []byte("seq")
	bRefs     = []byte("refs")
	bRefsBy   = []byte("refsby")
	bGrants   = []byte("grants")
	bGrantsBy = []byte("grantsby")
	bTokens   = []byte("tokens")
	kSchema   = []byte("schema")
)

// migrations[i] moves a file from schema version i to i+1.
var migrations = []func(tx *bolt.Tx) error{
	// 0 -> 1: create the buckets.
	func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bTree, bSeq, bRefs, bRefsBy, bGrants, bGrantsBy, bTokens} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	},
}

// Store is a cloud.Store on bbolt.
type Store struct {
	db *bolt.DB
}

var _ cloud.Store = (*Store)(nil)

// Open opens (creating if needed) the store file at path and migrates it.
// It waits at most timeout for another process's lock on the file.
func Open(path string, timeout time.Duration) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, errclass.Wrap(errclass.Unavailable, err, "open store %s: locked by another process", path)
		}
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	if err := db.Update(migrate); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

func migrate(tx *bolt.Tx) error {
	meta, err := tx.CreateBucketIfNotExists(bMeta)
	if err != nil {
		return err
	}
	v := 0
	if raw := meta.Get(kSchema); raw != nil {
		if v, err = strconv.Atoi(string(raw)); err != nil {
			return errclass.New(errclass.FailedPrecondition, "schema", "schema version %q is not a number", raw)
		}
	}
	if v > len(migrations) {
		return errclass.New(errclass.FailedPrecondition, "schema",
			"schema version %d is newer than this program's %d (written by a newer mlfleet)", v, len(migrations))
	}
	for ; v < len(migrations); v++ {
		if err := migrations[v](tx); err != nil {
			return fmt.Errorf("migrate schema %d -> %d: %w", v, v+1, err)
		}
	}
	return meta.Put(kSchema, []byte(strconv.Itoa(v)))
}

// Version reports the schema version stored in the file.
func (s *Store) Version() (int, error) {
	var v int
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		v, err = strconv.Atoi(string(tx.Bucket(bMeta).Get(kSchema)))
		return err
	})
	return v, err
}

// Close closes the file. It is safe to call more than once.
func (s *Store) Close() error {
	if s.db == nil {
		return nil
	}
	err := s.db.Close()
	return err
}

// View runs fn in a read-only transaction.
func (s *Store) View(ctx context.Context, fn func(cloud.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.View(func(tx *bolt.Tx) error { return fn(&txn{tx: tx}) })
}

// Update runs fn in a read-write transaction, committed if fn returns nil.
func (s *Store) Update(ctx context.Context, fn func(cloud.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error { return fn(&txn{tx: tx}) })
}

type txn struct{ tx *bolt.Tx }

// key turns a path into its tree key: all-digit segments zero-padded.
func key(path string) []byte {
	segs := strings.Split(path, "/")
	for i, s := range segs {
		if i > 0 && segs[i-1] == "versions" && s != "" && len(s) < 10 && allDigits(s) {
			segs[i] = strings.Repeat("0", 10-len(s)) + s
		}
	}
	return []byte(strings.Join(segs, "/"))
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func (t *txn) Get(path string, v any) error {
	raw := t.tx.Bucket(bTree).Get(key(path))
	if raw == nil {
		return errclass.NotFoundf("%s not found", path)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	return nil
}

func (t *txn) Exists(path string) (bool, error) {
	return t.tx.Bucket(bTree).Get(key(path)) != nil, nil
}

func (t *txn) Create(path string, v any) error {
	if t.tx.Bucket(bTree).Get(key(path)) != nil {
		return errclass.Conflictf("%s already exists", path)
	}
	return t.Put(path, v)
}

func (t *txn) Put(path string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	return t.tx.Bucket(bTree).Put(key(path), raw)
}

func (t *txn) Delete(path string) error {
	b := t.tx.Bucket(bTree)
	k := key(path)
	if b.Get(k) == nil {
		return errclass.NotFoundf("%s not found", path)
	}
	if err := b.Delete(k); err != nil {
		return err
	}
	return t.RemoveRefs(path)
}

// deletePrefix removes every key of bucket b that starts with prefix and
// returns them (copied).
func deletePrefix(b *bolt.Bucket, prefix []byte) ([][]byte, error) {
	var keys [][]byte
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return nil, err
		}
	}
	return keys, nil
}

func (t *txn) DeleteTree(path string) error {
	k := key(path)
	tree := t.tx.Bucket(bTree)
	if tree.Get(k) != nil {
		if err := tree.Delete(k); err != nil {
			return err
		}
	}
	if _, err := deletePrefix(tree, append(bytes.Clone(k), '/')); err != nil {
		return err
	}
	// References made by resources inside the tree.
	for _, p := range []string{path + "\x00", path + "/"} {
		keys, err := deletePrefix(t.tx.Bucket(bRefsBy), []byte(p))
		if err != nil {
			return err
		}
		for _, rk := range keys {
			referrer, target, _ := bytes.Cut(rk, []byte{0})
			if err := t.tx.Bucket(bRefs).Delete(join(target, referrer)); err != nil {
				return err
			}
		}
	}
	// Role assignments on scopes inside the tree.
	for _, p := range []string{path + "\x00", path + "/"} {
		keys, err := deletePrefix(t.tx.Bucket(bGrants), []byte(p))
		if err != nil {
			return err
		}
		for _, gk := range keys {
			scope, user, _ := bytes.Cut(gk, []byte{0})
			if err := t.tx.Bucket(bGrantsBy).Delete(join(user, scope)); err != nil {
				return err
			}
		}
	}
	return nil
}

func join(a, b []byte) []byte {
	out := make([]byte, 0, len(a)+1+len(b))
	out = append(out, a...)
	out = append(out, 0)
	return append(out, b...)
}

func (t *txn) List(collection string, depth int, pageToken string, limit int, fn func(raw []byte) error) (string, error) {
	if depth < 1 {
		return "", errclass.Invalid("depth", "list depth %d must be at least 1", depth)
	}
	prefix := append(key(collection), '/')
	c := t.tx.Bucket(bTree).Cursor()
	var k, v []byte
	if pageToken != "" {
		after, err := base64.RawURLEncoding.DecodeString(pageToken)
		if err != nil || !bytes.HasPrefix(after, prefix) {
			return "", errclass.Invalid("pageToken", "page token %q is not valid here", pageToken)
		}
		k, v = c.Seek(after)
		if bytes.Equal(k, after) {
			k, v = c.Next()
		}
	} else {
		k, v = c.Seek(prefix)
	}
	n := 0
	var last []byte
	for k != nil && bytes.HasPrefix(k, prefix) {
		rest := k[len(prefix):]
		slashes := bytes.Count(rest, []byte{'/'})
		if depth == 1 && slashes > 0 {
			// Inside a child's subtree: jump past "child/" ('0' sorts right after '/').
			child := rest[:bytes.IndexByte(rest, '/')]
			k, v = c.Seek(append(append(bytes.Clone(prefix), child...), '0'))
			continue
		}
		if slashes+1 != depth {
			k, v = c.Next()
			continue
		}
		if limit > 0 && n == limit {
			return base64.RawURLEncoding.EncodeToString(last), nil
		}
		if err := fn(bytes.Clone(v)); err != nil {
			return "", err
		}
		last = bytes.Clone(k)
		n++
		k, v = c.Next()
	}
	return "", nil
}

func (t *txn) HasAny(collection string) (bool, error) {
	prefix := append(key(collection), '/')
	k, _ := t.tx.Bucket(bTree).Cursor().Seek(prefix)
	return k != nil && bytes.HasPrefix(k, prefix), nil
}

func (t *txn) NextSeq(name string) (uint64, error) {
	b := t.tx.Bucket(bSeq)
	var n uint64
	if raw := b.Get([]byte(name)); len(raw) == 8 {
		n = binary.BigEndian.Uint64(raw)
	}
	n++
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], n)
	return n, b.Put([]byte(name), buf[:])
}

func (t *txn) AddRef(target, referrer string) error {
	if err := t.tx.Bucket(bRefs).Put(join([]byte(target), []byte(referrer)), nil); err != nil {
		return err
	}
	return t.tx.Bucket(bRefsBy).Put(join([]byte(referrer), []byte(target)), nil)
}

func (t *txn) RemoveRefs(referrer string) error {
	keys, err := deletePrefix(t.tx.Bucket(bRefsBy), []byte(referrer+"\x00"))
	if err != nil {
		return err
	}
	for _, k := range keys {
		_, target, _ := bytes.Cut(k, []byte{0})
		if err := t.tx.Bucket(bRefs).Delete(join(target, []byte(referrer))); err != nil {
			return err
		}
	}
	return nil
}

func (t *txn) Referrers(target string, limit int) ([]string, error) {
	var out []string
	c := t.tx.Bucket(bRefs).Cursor()
	for _, p := range []string{target + "\x00", target + "/"} {
		prefix := []byte(p)
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			_, referrer, _ := bytes.Cut(k, []byte{0})
			out = append(out, string(referrer))
			if limit > 0 && len(out) >= limit {
				return out, nil
			}
		}
	}
	return out, nil
}

func (t *txn) Grant(a cloud.RoleAssignment) error {
	raw, err := json.Marshal(a)
	if err != nil {
		return err
	}
	if err := t.tx.Bucket(bGrants).Put(join([]byte(a.Scope), []byte(a.User)), raw); err != nil {
		return err
	}
	return t.tx.Bucket(bGrantsBy).Put(join([]byte(a.User), []byte(a.Scope)), nil)
}

func (t *txn) Revoke(scope, user string) error {
	k := join([]byte(scope), []byte(user))
	if t.tx.Bucket(bGrants).Get(k) == nil {
		return errclass.NotFoundf("user %q has no role on %s", user, scope)
	}
	if err := t.tx.Bucket(bGrants).Delete(k); err != nil {
		return err
	}
	return t.tx.Bucket(bGrantsBy).Delete(join([]byte(user), []byte(scope)))
}

func (t *txn) Grants(user, scope string) ([]cloud.RoleAssignment, error) {
	var out []cloud.RoleAssignment
	decode := func(raw []byte) error {
		var a cloud.RoleAssignment
		if err := json.Unmarshal(raw, &a); err != nil {
			return fmt.Errorf("decode role assignment: %w", err)
		}
		out = append(out, a)
		return nil
	}
	grants := t.tx.Bucket(bGrants)
	switch {
	case user != "" && scope != "":
		if raw := grants.Get(join([]byte(scope), []byte(user))); raw != nil {
			// Not "return out, decode(raw)": the order in which out and the
			// call are evaluated is unspecified.
			if err := decode(raw); err != nil {
				return nil, err
			}
		}
	case user != "":
		prefix := []byte(user + "\x00")
		c := t.tx.Bucket(bGrantsBy).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			if err := decode(grants.Get(join(k[len(prefix):], []byte(user)))); err != nil {
				return nil, err
			}
		}
	default:
		prefix := []byte(scope)
		if scope != "" {
			prefix = append(prefix, 0)
		}
		c := grants.Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if err := decode(v); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// tokenRecord is how a token is stored: with its hash, which cloud.Token
// never serializes.
type tokenRecord struct {
	cloud.Token
	Hash string `json:"hash"`
}

func (t *txn) PutToken(tok cloud.Token) error {
	tok.Secret = ""
	raw, err := json.Marshal(tokenRecord{Token: tok, Hash: tok.Hash})
	if err != nil {
		return err
	}
	return t.tx.Bucket(bTokens).Put([]byte(tok.ID), raw)
}

func decodeToken(raw []byte) (cloud.Token, error) {
	var r tokenRecord
	if err := json.Unmarshal(raw, &r); err != nil {
		return cloud.Token{}, fmt.Errorf("decode token: %w", err)
	}
	r.Token.Hash = r.Hash
	return r.Token, nil
}

func (t *txn) GetToken(id string) (cloud.Token, error) {
	raw := t.tx.Bucket(bTokens).Get([]byte(id))
	if raw == nil {
		return cloud.Token{}, errclass.NotFoundf("token %q not found", id)
	}
	return decodeToken(raw)
}

func (t *txn) DeleteToken(id string) error {
	if t.tx.Bucket(bTokens).Get([]byte(id)) == nil {
		return errclass.NotFoundf("token %q not found", id)
	}
	return t.tx.Bucket(bTokens).Delete([]byte(id))
}

func (t *txn) TokensOf(user string) ([]cloud.Token, error) {
	var out []cloud.Token
	err := t.tx.Bucket(bTokens).ForEach(func(_, v []byte) error {
		tok, err := decodeToken(v)
		if err != nil {
			return err
		}
		if tok.User == user {
			out = append(out, tok)
		}
		return nil
	})
	return out, err
}
