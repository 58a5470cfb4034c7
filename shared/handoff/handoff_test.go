package handoff

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mlfleet/mlfleet/shared/errclass"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestGolden(t *testing.T) {
	cases := []struct {
		name   string
		h      Header
		prefix string
	}{
		{"serve", Header{Kind: KindServe, Service: "iris", Model: "iris", KeySHA256: KeyHash("k3y")},
			"POST /services/iris/score HTTP/1.1\r\nHost: device\r\nContent-Length: 2\r\n\r\n{}"},
		{"serve_nokey", Header{Kind: KindServe, Service: "rul"}, ""},
		{"return_foreign", Header{Kind: KindReturn, Reason: ReasonForeign},
			"GET /services/other/swagger.json HTTP/1.1\r\nHost: device\r\n\r\n"},
		{"return_draining", Header{Kind: KindReturn, Reason: ReasonDraining}, ""},
		{"drain", Header{Kind: KindDrain}, ""},
		{"drained", Header{Kind: KindDrained}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			msg, err := Encode(c.h, []byte(c.prefix))
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", c.name+".golden")
			if *update {
				if err := os.WriteFile(path, msg, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(msg, want) {
				t.Fatalf("wire format changed:\n got %q\nwant %q", msg, want)
			}
			h, prefix, err := Decode(want)
			if err != nil {
				t.Fatal(err)
			}
			if h != c.h || string(prefix) != c.prefix {
				t.Fatalf("decoded %+v %q, want %+v %q", h, prefix, c.h, c.prefix)
			}
		})
	}
}

func TestDecodeRefuses(t *testing.T) {
	good, err := Encode(Header{Kind: KindServe, Service: "iris"}, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	withHeader := func(json string) []byte {
		b := []byte("MLFH\x01")
		b = append(b, byte(len(json)>>8), byte(len(json)))
		return append(b, json...)
	}
	cases := []struct {
		name  string
		msg   []byte
		field string
	}{
		{"empty", nil, "magic"},
		{"bad magic", append([]byte("XLFH"), good[4:]...), "magic"},
		{"version 2", append([]byte("MLFH\x02"), good[5:]...), "version"},
		{"header longer than message", []byte("MLFH\x01\x00\xff{}"), "header"},
		{"not json", withHeader("{kind"), "header"},
		{"unknown field", withHeader(`{"kind":"serve","service":"a","extra":1}`), "header"},
		{"trailing json", withHeader(`{"kind":"serve","service":"a"}{}`), "header"},
		{"unknown kind", withHeader(`{"kind":"steal"}`), "kind"},
		{"serve without service", withHeader(`{"kind":"serve"}`), "service"},
		{"serve with reason", withHeader(`{"kind":"serve","service":"a","reason":"foreign"}`), "reason"},
		{"return without reason", withHeader(`{"kind":"return"}`), "reason"},
		{"return with key", withHeader(`{"kind":"return","reason":"draining","keySha256":"` + KeyHash("k") + `"}`), "kind"},
		{"short key hash", withHeader(`{"kind":"serve","service":"a","keySha256":"abc"}`), "keySha256"},
		{"upper-case key hash", withHeader(`{"kind":"serve","service":"a","keySha256":"` + strings.ToUpper(KeyHash("k")) + `"}`), "keySha256"},
		{"drain with a reason", withHeader(`{"kind":"drain","reason":"draining"}`), "kind"},
		{"drained with a service", withHeader(`{"kind":"drained","service":"a"}`), "kind"},
		{"old key field", withHeader(`{"kind":"serve","service":"a","key":"k"}`), "header"},
		{"too large", append(good, make([]byte, MaxMessage)...), "message"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := Decode(c.msg)
			if err == nil {
				t.Fatal("accepted")
			}
			if got := errclass.FieldOf(err); got != c.field {
				t.Fatalf("field %q, want %q (%v)", got, c.field, err)
			}
		})
	}
}

func TestKeyMatches(t *testing.T) {
	h := KeyHash("s3cret")
	cases := []struct {
		auth string
		want bool
	}{
		{"Bearer s3cret", true},
		{"Bearer s3cret ", false},
		{"bearer s3cret", false},
		{"s3cret", false},
		{"Bearer wrong", false},
		{"", false},
	}
	for _, c := range cases {
		if got := KeyMatches(c.auth, h); got != c.want {
			t.Errorf("KeyMatches(%q) = %v, want %v", c.auth, got, c.want)
		}
	}
	if KeyHash("") != "" {
		t.Error("the hash of no key is not empty")
	}
}

func TestEncodeRefusesOversize(t *testing.T) {
	_, err := Encode(Header{Kind: KindServe, Service: "iris"}, make([]byte, MaxMessage))
	if !errclass.Is(err, errclass.TooLarge) {
		t.Fatalf("got %v, want too large", err)
	}
}

func FuzzDecode(f *testing.F) {
	for _, name := range []string{"serve", "serve_nokey", "return_foreign", "return_draining", "drain", "drained"} {
		b, err := os.ReadFile(filepath.Join("testdata", name+".golden"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("MLFH\x01\x00\x02{}"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		h, prefix, err := Decode(msg)
		if err != nil {
			return
		}
		// What decodes re-encodes to the same bytes' meaning.
		again, err := Encode(h, prefix)
		if err != nil {
			t.Fatalf("decoded %+v does not encode: %v", h, err)
		}
		h2, p2, err := Decode(again)
		if err != nil || h2 != h || !bytes.Equal(p2, prefix) {
			t.Fatalf("round trip: %+v %q %v", h2, p2, err)
		}
	})
}
