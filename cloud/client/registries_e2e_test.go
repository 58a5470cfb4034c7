package client_test

import (
	"context"
	"testing"

	"github.com/mlfleet/mlfleet/cloud"
	"github.com/mlfleet/mlfleet/cloud/client"
	"github.com/mlfleet/mlfleet/shared/errclass"
)

func TestRegistriesAgainstCloud(t *testing.T) {
	c := startCloud(t)
	ctx := context.Background()
	if _, err := c.CreateSubscription(ctx, client.SubscriptionCreate{Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	for _, a := range []client.AccountCreate{{Name: "mm", Kind: cloud.ModelManagement}, {Name: "lab", Kind: cloud.Experimentation}} {
		if _, err := c.CreateAccount(ctx, "acme", a); err != nil {
			t.Fatal(err)
		}
	}
	const secret = "pw-3f2a9c0b1e4d"
	r, err := c.CreateRegistry(ctx, "acme", "mm", client.RegistryCreate{Name: "harbor", Host: "registry.internal:5000", Prefix: "/team/ml/",
		Username: "robot", Password: secret})
	if err != nil {
		t.Fatal(err)
	}
	if r.Name != "harbor" || r.Prefix != "team/ml" || !r.HasPassword || r.Password != "" || r.Path != cloud.RegistryPath("acme", "mm", "harbor") {
		t.Errorf("created %+v", r)
	}
	if _, err := c.CreateRegistry(ctx, "acme", "mm", client.RegistryCreate{Name: "open", Host: "10.0.0.5", Insecure: true}); err != nil {
		t.Fatal(err)
	}
	got, err := c.GetRegistry(ctx, "acme", "mm", "harbor")
	if err != nil || got.Password != "" || !got.HasPassword || got.Username != "robot" {
		t.Errorf("get = %+v, %v", got, err)
	}
	page, err := c.ListRegistries(ctx, "acme", "mm", client.ListOptions{Limit: 1})
	if err != nil || len(page.Items) != 1 || page.NextPageToken == "" {
		t.Fatalf("list one page = %+v, %v", page, err)
	}
	all, err := c.ListAllRegistries(ctx, "acme", "mm")
	if err != nil || len(all) != 2 || all[0].Name != "harbor" || all[1].Name != "open" || all[1].HasPassword || !all[1].Insecure {
		t.Fatalf("list all = %+v, %v", all, err)
	}
	for _, r := range all {
		if r.Password != "" {
			t.Errorf("list returned the password of %s", r.Name)
		}
	}

	tests := []struct {
		name  string
		call  func() error
		class errclass.Class
		field string
	}{
		{"duplicate", func() error {
			_, err := c.CreateRegistry(ctx, "acme", "mm", client.RegistryCreate{Name: "harbor", Host: "h"})
			return err
		}, errclass.Conflict, ""},
		{"host with scheme", func() error {
			_, err := c.CreateRegistry(ctx, "acme", "mm", client.RegistryCreate{Name: "x", Host: "https://h"})
			return err
		}, errclass.InvalidArgument, "host"},
		{"bad name", func() error {
			_, err := c.CreateRegistry(ctx, "acme", "mm", client.RegistryCreate{Name: "X Y", Host: "h"})
			return err
		}, errclass.InvalidArgument, "name"},
		{"not a model management account", func() error {
			_, err := c.CreateRegistry(ctx, "acme", "lab", client.RegistryCreate{Name: "x", Host: "h"})
			return err
		}, errclass.FailedPrecondition, "account"},
		{"get unknown", func() error { _, err := c.GetRegistry(ctx, "acme", "mm", "ghost"); return err }, errclass.NotFound, ""},
		{"delete unknown", func() error { return c.DeleteRegistry(ctx, "acme", "mm", "ghost") }, errclass.NotFound, ""},
	}
	for _, tt := range tests {
		err := tt.call()
		if err == nil {
			t.Errorf("%s: no error", tt.name)
			continue
		}
		if errclass.ClassOf(err) != tt.class {
			t.Errorf("%s: class %s, want %s (%v)", tt.name, errclass.ClassOf(err), tt.class, err)
		}
		if errclass.FieldOf(err) != tt.field {
			t.Errorf("%s: field %q, want %q (%v)", tt.name, errclass.FieldOf(err), tt.field, err)
		}
	}

	if err := c.DeleteRegistry(ctx, "acme", "mm", "harbor"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetRegistry(ctx, "acme", "mm", "harbor"); errclass.ClassOf(err) != errclass.NotFound {
		t.Errorf("get after delete: %v", err)
	}
}
