package server

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/mlfleet/mlfleet/shared/twin"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// mosquittoProc runs Debian's mosquitto with the files the cloud writes.
type mosquittoProc struct {
	t    *testing.T
	conf string
	cmd  *exec.Cmd
}

func (m *mosquittoProc) start() {
	m.t.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		bin = "/usr/sbin/mosquitto"
	}
	m.cmd = exec.Command(bin, "-c", m.conf)
	out, _ := os.Create(m.conf + ".log")
	m.cmd.Stdout, m.cmd.Stderr = out, out
	if err := m.cmd.Start(); err != nil {
		m.t.Fatalf("start mosquitto (apt-get install mosquitto): %v", err)
	}
}

func (m *mosquittoProc) stop() {
	if m.cmd != nil && m.cmd.Process != nil {
		m.cmd.Process.Signal(syscall.SIGTERM) // a graceful restart: mosquitto saves its retained messages
		m.cmd.Wait()
		m.cmd = nil
	}
}

// TestExternalMosquitto runs the cloud against a real mosquitto whose
// password and ACL files the cloud generates: devices enroll, connect, are
// confined to their topics, and desired state survives a broker restart.
func TestExternalMosquitto(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t)
	mosqDir := filepath.Join(dir, "mosquitto")
	pidFile := filepath.Join(dir, "mosquitto.pid")
	conf := filepath.Join(dir, "mosquitto.conf")
	persist := filepath.Join(dir, "persist") + "/"
	os.MkdirAll(persist, 0o700)
	os.WriteFile(conf, []byte(fmt.Sprintf("user root\npid_file %s\npersistence_location %s\ninclude_dir %s\n", pidFile, persist, mosqDir)), 0o600)

	tok, err := Init(context.Background(), dir, "admin", "", "")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{DataDir: dir, Addr: "127.0.0.1:0", MQTTURL: fmt.Sprintf("tcp://127.0.0.1:%d", port),
		MQTTUser: "mlfleet-cloud", MQTTPassword: "cloud-secret", MosquittoDir: mosqDir, MosquittoPIDFile: pidFile})
	if err != nil {
		t.Fatal(err)
	}
	m := &mosquittoProc{t: t, conf: conf}
	m.start()
	t.Cleanup(m.stop)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	c := &cloudUnderTest{srv: srv, token: tok.Secret, t: t}
	eventually(t, "cloud connected to mosquitto", func() bool { return srv.bus.Connected() })
	c.call("POST", "/api/v1/subscriptions", `{"name":"s"}`, 201, nil)
	c.call("POST", "/api/v1/subscriptions/s/accounts", `{"name":"mm","kind":"modelmanagement"}`, 201, nil)

	e1 := c.enroll(`{}`)
	e2 := c.enroll(`{}`)
	if e1.MQTT.URL != fmt.Sprintf("tcp://127.0.0.1:%d", port) {
		t.Errorf("device told to use %s", e1.MQTT.URL)
	}
	var d1 *deviceClient
	eventually(t, "mosquitto reloaded the password file", func() bool {
		d1, err = connectDevice(t, e1.MQTT.URL, e1.DeviceID, e1.Credential, twin.Topic(e1.DeviceID, twin.KindPresence))
		return err == nil
	})
	if _, err := connectDevice(t, e1.MQTT.URL, e1.DeviceID, "wrong", ""); err == nil {
		t.Error("wrong password accepted by mosquitto")
	}
	// Reading another device's desired state delivers nothing; own works.
	d1.Subscribe(twin.Topic(e2.DeviceID, twin.KindDesired), 1, nil).WaitTimeout(5 * time.Second)
	d1.Subscribe(twin.Topic(e1.DeviceID, twin.KindDesired), 1, nil).WaitTimeout(5 * time.Second)
	c.call("PUT", acct+"/devices/"+e2.DeviceID+"/desired", `{"services":[]}`, 200, nil)
	c.call("PUT", acct+"/devices/"+e1.DeviceID+"/desired", `{"services":[]}`, 200, nil)
	select {
	case msg := <-d1.got:
		if msg.Topic() != twin.Topic(e1.DeviceID, twin.KindDesired) {
			t.Fatalf("device 1 got %s", msg.Topic())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("device 1 got no desired state")
	}
	// A forged report is dropped by mosquitto's ACL; its own is ingested.
	now := time.Now().UTC()
	d1.publish(t, twin.Topic(e2.DeviceID, twin.KindReported), twin.Reported{Protocol: 1, Device: e2.DeviceID, ObservedVersion: 1, Time: now, Services: []twin.ServiceStatus{}})
	d1.publish(t, twin.Topic(e1.DeviceID, twin.KindReported), twin.Reported{Protocol: 1, Device: e1.DeviceID, ObservedVersion: 1, Time: now, Services: []twin.ServiceStatus{}})
	eventually(t, "report ingested through mosquitto", func() bool {
		d := c.device(e1.DeviceID)
		return d.Reported != nil && d.Reported.ObservedVersion == 1
	})
	if d := c.device(e2.DeviceID); d.Reported != nil {
		t.Error("forged report reached the cloud")
	}

	// Broker restart: the retained desired state survives, the cloud reconnects.
	d1.Disconnect(0)
	m.stop()
	m.start()
	eventually(t, "cloud reconnected to mosquitto", func() bool { return srv.bus.Connected() })
	eventually(t, "device reconnects", func() bool {
		d1, err = connectDevice(t, e1.MQTT.URL, e1.DeviceID, e1.Credential, "")
		return err == nil
	})
	d1.Subscribe(twin.Topic(e1.DeviceID, twin.KindDesired), 1, nil).WaitTimeout(5 * time.Second)
	select {
	case msg := <-d1.got:
		var d twin.Desired
		if err := twin.Decode(msg.Payload(), twin.MaxDocument, &d, e1.DeviceID); err != nil || d.Version != 1 {
			t.Fatalf("retained desired after restart: %v %+v", err, d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("retained desired state lost in the broker restart")
	}
}
