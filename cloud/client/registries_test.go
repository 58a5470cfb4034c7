package client

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mlfleet/mlfleet/shared/errclass"
)

// TestRegistryRequestsGolden pins the wire format of the external registry
// calls: method, escaped path, query, headers and body.
func TestRegistryRequestsGolden(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	c, err := New(srv.URL, "secret-token")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	calls := []func() error{
		func() error {
			_, err := c.CreateRegistry(ctx, "acme", "mm", RegistryCreate{Name: "harbor", Host: "registry.internal:5000", Prefix: "team/ml",
				Username: "robot", Password: "pw-1", Insecure: true})
			return err
		},
		func() error {
			_, err := c.CreateRegistry(ctx, "acme", "mm", RegistryCreate{Name: "open", Host: "10.0.0.5"})
			return err
		},
		func() error {
			_, err := c.ListRegistries(ctx, "acme", "mm", ListOptions{Limit: 2, PageToken: "p2"})
			return err
		},
		func() error { _, err := c.ListAllRegistries(ctx, "acme", "mm"); return err },
		func() error { _, err := c.GetRegistry(ctx, "acme", "mm", "harbor"); return err },
		func() error { return c.DeleteRegistry(ctx, "acme", "mm", "a b") },
	}
	for i, call := range calls {
		if err := call(); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	checkGolden(t, "registries.golden", rec.log.Bytes())
}

func TestRegistryCreateNeverPrintsPassword(t *testing.T) {
	tests := []struct {
		in   RegistryCreate
		want string
	}{
		{RegistryCreate{Name: "h", Host: "r:5000", Username: "u", Password: "hunter2-secret"}, "Password:(set)"},
		{RegistryCreate{Name: "h", Host: "r:5000"}, "Password: "},
	}
	for _, tt := range tests {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
			got := fmt.Sprintf(verb, tt.in)
			if strings.Contains(got, "hunter2") || !strings.Contains(got, tt.want) || !strings.Contains(got, "r:5000") {
				t.Errorf("Sprintf(%s) = %q", verb, got)
			}
		}
	}
}

func TestCreateRegistryPasswordTooLong(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	c, err := New(srv.URL, "t")
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.CreateRegistry(context.Background(), "acme", "mm", RegistryCreate{Name: "h", Host: "r", Password: strings.Repeat("x", maxRegistryPassword+1)})
	if errclass.ClassOf(err) != errclass.InvalidArgument || errclass.FieldOf(err) != "password" || strings.Contains(err.Error(), "xxxx") {
		t.Errorf("err = %v, want invalid field password", err)
	}
	if rec.log.Len() != 0 {
		t.Errorf("a request was sent:\n%s", rec.log.String())
	}
}
