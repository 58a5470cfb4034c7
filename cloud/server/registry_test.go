package server

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

func statusOf(err error) int {
	var te *transport.Error
	switch {
	case err == nil:
		return 200
	case errors.As(err, &te):
		return te.StatusCode
	}
	return -1
}

// TestEmbeddedRegistryFollowsCloudAuth pushes and pulls through the registry
// served on the cloud's own port with each kind of credential.
func TestEmbeddedRegistryFollowsCloudAuth(t *testing.T) {
	c := startServer(t)
	c.call("POST", "/api/v1/subscriptions/s/accounts", `{"name":"other","kind":"modelmanagement"}`, 201, nil)
	host := strings.TrimPrefix(c.srv.URL(), "http://")
	ref := func(repo string) name.Reference {
		r, err := name.ParseReference(host+"/"+repo+":v1", name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	basic := func(secret string) remote.Option {
		return remote.WithAuth(&authn.Basic{Username: "x", Password: secret})
	}
	img, err := random.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref("s/mm/iris"), img, basic(c.token)); err != nil {
		t.Fatalf("admin push: %v", err)
	}
	// A reader of the account may pull, not push.
	var reader struct {
		Token string `json:"token"`
	}
	c.call("POST", "/api/v1/users", `{"name":"rita"}`, 201, nil)
	c.call("PUT", acct+"/roleAssignments/rita", `{"role":"Reader"}`, 200, nil)
	c.call("POST", "/api/v1/users/rita/tokens", `{"name":"t"}`, 201, &reader)
	e := c.enroll(`{}`)
	pull, _, err := c.srv.Service().PullToken(context.Background(), "s/mm/iris", e.DeviceID, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, secret, repo string
		push               bool
		want               int
	}{
		{"reader pulls", reader.Token, "s/mm/iris", false, 200},
		{"reader cannot push", reader.Token, "s/mm/iris", true, http.StatusForbidden},
		{"reader cannot see another account", reader.Token, "s/other/iris", false, http.StatusNotFound},
		{"device pulls its account", e.Credential, "s/mm/iris", false, 200},
		{"device cannot push", e.Credential, "s/mm/iris", true, http.StatusForbidden},
		{"device cannot pull another account", e.Credential, "s/other/iris", false, http.StatusNotFound},
		{"pull token pulls its repo", pull, "s/mm/iris", false, 200},
		{"pull token is scoped", pull, "s/mm/other", false, http.StatusNotFound},
		{"pull token cannot push", pull, "s/mm/iris", true, http.StatusForbidden},
		{"bad token", "mlf_0000000000000000_nope", "s/mm/iris", false, http.StatusUnauthorized},
		{"forged pull token", pull[:len(pull)-3] + "abc", "s/mm/iris", false, http.StatusUnauthorized},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.push {
				other, _ := random.Image(512, 1)
				err = remote.Write(ref(tc.repo), other, basic(tc.secret))
			} else {
				_, err = remote.Image(ref(tc.repo), basic(tc.secret))
			}
			if st := statusOf(err); st != tc.want {
				t.Errorf("status %d (%v), want %d", st, err, tc.want)
			}
		})
	}
	// Anonymous access is refused.
	resp, err := http.Get(c.srv.URL() + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("anonymous /v2/ = %d, want 401", resp.StatusCode)
	}
}
