package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/mlfleet/mlfleet/cloud"
	"github.com/mlfleet/mlfleet/shared/twin"
)

// cloudUnderTest runs a real cloud (embedded broker included) in a temp dir.
type cloudUnderTest struct {
	srv   *Server
	token string
	t     *testing.T
}

func startServer(t *testing.T) *cloudUnderTest {
	t.Helper()
	dir := t.TempDir()
	tok, err := Init(context.Background(), dir, "admin", "", "")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{DataDir: dir, Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	c := &cloudUnderTest{srv: srv, token: tok.Secret, t: t}
	c.call("POST", "/api/v1/subscriptions", `{"name":"s"}`, 201, nil)
	c.call("POST", "/api/v1/subscriptions/s/accounts", `{"name":"mm","kind":"modelmanagement"}`, 201, nil)
	return c
}

const acct = "/api/v1/subscriptions/s/accounts/mm"

func (c *cloudUnderTest) call(method, path, body string, want int, out any) {
	c.t.Helper()
	c.callRaw(method, path, "application/json", bytes.NewReader([]byte(body)), want, out)
}

func (c *cloudUnderTest) callRaw(method, path, ctype string, body io.Reader, want int, out any) {
	c.t.Helper()
	req, _ := http.NewRequest(method, c.srv.URL()+path, body)
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", ctype)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		c.t.Fatalf("%s %s = %d, want %d: %s", method, path, resp.StatusCode, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			c.t.Fatal(err)
		}
	}
}

func (c *cloudUnderTest) enroll(labels string) cloud.Enrollment {
	c.t.Helper()
	var et cloud.EnrollmentToken
	c.call("POST", acct+"/enrollmentTokens", `{"labels":`+labels+`}`, 201, &et)
	var e cloud.Enrollment
	c.call("POST", "/api/v1/enroll", `{"token":"`+et.Token+`","name":"test-device"}`, 201, &e)
	return e
}

func (c *cloudUnderTest) device(id string) cloud.Device {
	c.t.Helper()
	var d cloud.Device
	c.call("GET", acct+"/devices/"+id, "", 200, &d)
	return d
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type deviceClient struct {
	paho.Client
	got chan paho.Message
}

func connectDevice(t *testing.T, url, id, password string, will string) (*deviceClient, error) {
	t.Helper()
	got := make(chan paho.Message, 100)
	opts := paho.NewClientOptions().AddBroker(url).SetClientID(id).SetUsername(id).SetPassword(password).
		SetAutoReconnect(false).SetConnectTimeout(5 * time.Second).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { got <- m })
	if will != "" {
		opts.SetWill(will, "gone", 1, true)
	}
	c := paho.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return nil, fmt.Errorf("connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return &deviceClient{Client: c, got: got}, nil
}

func (d *deviceClient) publish(t *testing.T, topic string, v any) {
	t.Helper()
	var payload []byte
	switch p := v.(type) {
	case []byte:
		payload = p
	default:
		payload, _ = json.Marshal(v)
	}
	tok := d.Publish(topic, 1, false, payload)
	tok.WaitTimeout(5 * time.Second)
}

func TestDeviceSyncOverEmbeddedBroker(t *testing.T) {
	c := startServer(t)
	e1 := c.enroll(`{"site":"lab"}`)
	e2 := c.enroll(`{"site":"hq"}`)
	if e1.DeviceID == e2.DeviceID || e1.MQTT.URL != c.srv.MQTTURL() || e1.MQTT.Username != e1.DeviceID {
		t.Fatalf("enrollments %+v %+v", e1, e2)
	}
	var page cloud.Page[cloud.Device]
	c.call("GET", acct+"/devices?label=site=lab", "", 200, &page)
	if len(page.Items) != 1 || page.Items[0].ID != e1.DeviceID {
		t.Fatalf("label filter = %+v", page.Items)
	}

	// Bad credentials, a foreign client id and a foreign will are refused.
	if _, err := connectDevice(t, e1.MQTT.URL, e1.DeviceID, "wrong", ""); err == nil {
		t.Error("wrong password accepted")
	}
	if _, err := connectDevice(t, e1.MQTT.URL, e2.DeviceID, e1.Credential, ""); err == nil {
		t.Error("device 1's credential accepted for device 2")
	}
	if _, err := connectDevice(t, e1.MQTT.URL, e1.DeviceID, e1.Credential, twin.Topic(e2.DeviceID, twin.KindPresence)); err == nil {
		t.Error("a will on another device's topic was accepted")
	}

	// Desired state set before the device connects arrives as the retained message.
	c.call("PUT", acct+"/devices/"+e1.DeviceID+"/desired", `{"services":[]}`, 200, nil)
	d1, err := connectDevice(t, e1.MQTT.URL, e1.DeviceID, e1.Credential, twin.Topic(e1.DeviceID, twin.KindPresence))
	if err != nil {
		t.Fatal(err)
	}
	// Another device's topics cannot be subscribed.
	st := d1.Subscribe(twin.Topic(e2.DeviceID, twin.KindDesired), 1, nil)
	st.WaitTimeout(5 * time.Second)
	if res := st.(*paho.SubscribeToken).Result(); st.Error() == nil && res[twin.Topic(e2.DeviceID, twin.KindDesired)] != 0x80 {
		t.Errorf("subscribe to another device's desired = %v, want refused (0x80)", res)
	}
	if st := d1.Subscribe(twin.Topic(e1.DeviceID, twin.KindDesired), 1, nil); !st.WaitTimeout(5*time.Second) || st.Error() != nil {
		t.Fatalf("subscribe own desired: %v", st.Error())
	}
	select {
	case m := <-d1.got:
		var d twin.Desired
		if err := twin.Decode(m.Payload(), twin.MaxDocument, &d, e1.DeviceID); err != nil || d.Version != 1 || !m.Retained() {
			t.Fatalf("desired = %v %+v retained=%v", err, d, m.Retained())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no retained desired state")
	}

	// Its own report is ingested; a malformed one is counted and refused.
	now := time.Now().UTC()
	d1.publish(t, twin.Topic(e1.DeviceID, twin.KindReported), []byte(`{"protocol":1,`))
	own := twin.Reported{Protocol: twin.Protocol, Device: e1.DeviceID, ObservedVersion: 1, Time: now, Services: []twin.ServiceStatus{}}
	d1.publish(t, twin.Topic(e1.DeviceID, twin.KindReported), own)
	eventually(t, "reported state ingested", func() bool {
		d := c.device(e1.DeviceID)
		return d.Reported != nil && d.Reported.ObservedVersion == 1 && d.Online && d.Rejected == 1
	})
	// Publishing as device 2 gets device 1 disconnected, and nothing stored.
	forged := twin.Reported{Protocol: twin.Protocol, Device: e2.DeviceID, ObservedVersion: 9, Time: now, Services: []twin.ServiceStatus{}}
	d1.publish(t, twin.Topic(e2.DeviceID, twin.KindReported), forged)
	eventually(t, "the forging device is disconnected", func() bool { return !d1.IsConnectionOpen() })
	if d := c.device(e2.DeviceID); d.Reported != nil {
		t.Errorf("device 1 reported as device 2: %+v", d.Reported)
	}
	d1, err = connectDevice(t, e1.MQTT.URL, e1.DeviceID, e1.Credential, twin.Topic(e1.DeviceID, twin.KindPresence))
	if err != nil {
		t.Fatal(err)
	}
	if st := d1.Subscribe(twin.Topic(e1.DeviceID, twin.KindDesired), 1, nil); !st.WaitTimeout(5*time.Second) || st.Error() != nil {
		t.Fatalf("subscribe own desired: %v", st.Error())
	}
	<-d1.got // the retained version 1 again

	// A DesiredRequest gets the current desired state again.
	c.call("PUT", acct+"/devices/"+e1.DeviceID+"/desired", `{"services":[]}`, 200, nil)
	d1.publish(t, twin.Topic(e1.DeviceID, twin.KindDesiredGet), twin.DesiredRequest{Protocol: 1, Device: e1.DeviceID, Have: 1})
	n := 0
	eventually(t, "desired version 2 twice (publish + request)", func() bool {
		for {
			select {
			case m := <-d1.got:
				var d twin.Desired
				if twin.Decode(m.Payload(), twin.MaxDocument, &d, e1.DeviceID) == nil && d.Version == 2 {
					n++
				}
				if n >= 2 {
					return true
				}
			default:
				return false
			}
		}
	})

	// Telemetry is stored and acknowledged.
	if st := d1.Subscribe(twin.Topic(e1.DeviceID, twin.KindTelemetryAck), 1, nil); !st.WaitTimeout(5*time.Second) || st.Error() != nil {
		t.Fatal(st.Error())
	}
	d1.publish(t, twin.Topic(e1.DeviceID, twin.KindTelemetry), twin.Telemetry{Protocol: 1, Device: e1.DeviceID, Seq: 1, Time: now,
		Services: []twin.ServiceTelemetry{{Name: "iris", Metrics: map[string]float64{"requests_total": 5}}}})
	eventually(t, "telemetry ack", func() bool {
		select {
		case m := <-d1.got:
			var a twin.TelemetryAck
			return twin.Decode(m.Payload(), twin.MaxDocument, &a, e1.DeviceID) == nil && a.Seq == 1
		default:
			return false
		}
	})

	// Presence: the will marks the device offline when it drops.
	d1.publish(t, twin.Topic(e1.DeviceID, twin.KindPresence), twin.Presence{Protocol: 1, Device: e1.DeviceID, Online: true, Time: now})
	eventually(t, "online", func() bool { return c.device(e1.DeviceID).Online })

	// Deleting the device revokes its credential.
	c.call("DELETE", acct+"/devices/"+e2.DeviceID, "", 204, nil)
	if _, err := connectDevice(t, e2.MQTT.URL, e2.DeviceID, e2.Credential, ""); err == nil {
		t.Error("deleted device could still connect")
	}
	// Re-enrolling keeps the id and rotates the credential.
	var et cloud.EnrollmentToken
	c.call("POST", acct+"/enrollmentTokens", `{}`, 201, &et)
	var again cloud.Enrollment
	c.call("POST", "/api/v1/enroll", fmt.Sprintf(`{"token":%q,"deviceId":%q,"credential":%q}`, et.Token, e1.DeviceID, e1.Credential), 201, &again)
	if again.DeviceID != e1.DeviceID || again.Credential == e1.Credential {
		t.Fatalf("re-enroll = %+v", again)
	}
	if _, err := connectDevice(t, e1.MQTT.URL, e1.DeviceID+"x", e1.Credential, ""); err == nil {
		t.Error("old credential still works")
	}
	// A used token cannot enroll again.
	c.call("POST", "/api/v1/enroll", fmt.Sprintf(`{"token":%q}`, et.Token), 401, nil)
}
