package server

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mlfleet/mlfleet/shared/twin"
)

// TestDevicesGetWhatTheyNeedToPull: with an advertised URL, images name the
// advertised host (the build still pushes to the local listener), enrolling
// devices are told that host, and every desired service says how to reach its
// registry: a scoped pull token for the cloud's own (plain HTTP, as the cloud
// URL is http), the pull credential of an external registry of the account
// (never its push one), and nothing for registries the account does not know.
func TestDevicesGetWhatTheyNeedToPull(t *testing.T) {
	const advertised = "mlfleet-cloud.test:8480" // resolves nowhere: pushes must stay local
	c := startBuildServerWith(t, func(cfg *Config) { cfg.AdvertiseURL = "http://" + advertised })
	c.upload("iris", testdata+"iris_logreg.onnx")
	c.call("POST", acct+"/manifests", `{"apiVersion":"mlfleet.io/v1","name":"iris","runtime":"onnx","models":[{"name":"iris","version":1}]}`, 201, nil)
	op, img := c.buildImage("iris", "iris:1")
	if img == nil {
		t.Fatalf("build: %+v", op.Error)
	}
	if !strings.HasPrefix(img.Reference, advertised+"/") {
		t.Fatalf("reference %s does not name the advertised host %s", img.Reference, advertised)
	}
	e := c.enroll(`{}`)
	if e.Registry != advertised || e.Cloud != "http://"+advertised {
		t.Fatalf("enrollment tells registry %q, cloud %q", e.Registry, e.Cloud)
	}
	c.call("POST", acct+"/registries", `{"name":"lab","host":"registry.example:5000","prefix":"team","username":"pusher","password":"push-s3cret","pullUsername":"puller","pullPassword":"p4ss","insecure":true}`, 201, nil)
	c.call("POST", acct+"/registries", `{"name":"private","host":"private.example","username":"pusher","password":"push-s3cret"}`, 201, nil)

	digest := "@sha256:" + strings.Repeat("ab", 32)
	external, unknown, pushOnly := "registry.example:5000/team/rul"+digest, "registry.example:5000/teamx/rul"+digest, "private.example/rul"+digest
	c.call("PUT", acct+"/devices/"+e.DeviceID+"/desired", fmt.Sprintf(
		`{"services":[{"name":"own","image":%q},{"name":"ext","image":%q},{"name":"unknown","image":%q},{"name":"pushonly","image":%q}]}`,
		img.Reference, external, unknown, pushOnly), 200, nil)

	d, err := connectDevice(t, c.srv.MQTTURL(), e.DeviceID, e.Credential, "")
	if err != nil {
		t.Fatal(err)
	}
	if st := d.Subscribe(twin.Topic(e.DeviceID, twin.KindDesired), 1, nil); !st.WaitTimeout(5*time.Second) || st.Error() != nil {
		t.Fatalf("subscribe: %v", st.Error())
	}
	var desired twin.Desired
	select {
	case m := <-d.got:
		if err := twin.Decode(m.Payload(), twin.MaxDocument, &desired, e.DeviceID); err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no desired state")
	}
	pulls := map[string]*twin.PullAuth{}
	for _, s := range desired.Services {
		pulls[s.Name] = s.Pull
	}
	if p := pulls["own"]; p == nil || p.Username != e.DeviceID || p.Password == "" || !p.PlainHTTP || p.ExpiresAt.IsZero() {
		t.Errorf("own registry: %+v, want a plain-HTTP pull token for the device", p)
	}
	if p := pulls["ext"]; p == nil || p.Username != "puller" || p.Password != "p4ss" || !p.PlainHTTP {
		t.Errorf("external registry: %+v, want its stored credential, plain HTTP", p)
	}
	if p := pulls["unknown"]; p != nil {
		t.Errorf("a registry the account does not know got credentials: %+v", p)
	}
	if p := pulls["pushonly"]; p != nil {
		t.Errorf("a registry with a push credential only handed it to a device: %+v", p)
	}
	var shown struct {
		Items []map[string]any `json:"items"`
	}
	c.call("GET", acct+"/registries", "", 200, &shown)
	for _, r := range shown.Items {
		if r["password"] != nil || r["pullPassword"] != nil {
			t.Errorf("registry list shows a password: %v", r)
		}
	}
}

func TestAdvertiseURLIsChecked(t *testing.T) {
	for _, u := range []string{"mlfleet-cloud:8480", "ftp://host", "http://", "http://host/sub/path"} {
		if _, err := New(Config{DataDir: t.TempDir(), Addr: "127.0.0.1:0", AdvertiseURL: u}); err == nil || !strings.Contains(err.Error(), "advertise") {
			t.Errorf("AdvertiseURL %q: %v, want refused", u, err)
		}
	}
}
