package edge

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/mlfleet/mlfleet/edge/internal/boltstore"
	"github.com/mlfleet/mlfleet/shared/errclass"
	"github.com/mlfleet/mlfleet/shared/twin"
)

// EnrollConfig is what `mlfleet-edge enroll` needs.
type EnrollConfig struct {
	DataDir string
	// Cloud is the cloud's base URL, e.g. http://cloud:8480.
	Cloud string
	// Token is the one-time enrollment token (mle_...).
	Token string
	// Name is the device's display name (default: the host name).
	Name       string
	HTTPClient *http.Client
}

// EnrollRequest is the body of POST /api/v1/enroll.
type EnrollRequest struct {
	Token      string `json:"token"`
	Name       string `json:"name,omitempty"`
	DeviceID   string `json:"deviceId,omitempty"`
	Credential string `json:"credential,omitempty"`
}

const maxEnrollAnswer = 64 << 10

// Enroll enrolls the device with the cloud and stores the enrollment in the
// state file. If the device is already enrolled it re-enrolls with its id
// and credential, which keeps the id and rotates the credential. It returns
// the device id.
func Enroll(ctx context.Context, cfg EnrollConfig) (string, error) {
	switch {
	case cfg.DataDir == "":
		return "", errclass.Invalid("dataDir", "data dir is empty")
	case cfg.Token == "":
		return "", errclass.Invalid("token", "enrollment token is empty")
	}
	base, err := url.Parse(cfg.Cloud)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return "", errclass.Invalid("cloud", "cloud URL %q is not an http(s) URL", cfg.Cloud)
	}
	store, err := boltstore.Open(StatePath(cfg.DataDir), boltstore.Options{})
	if err != nil {
		return "", err
	}
	defer store.Close()
	req := EnrollRequest{Token: cfg.Token, Name: cfg.Name}
	if old, err := store.Enrollment(); err == nil {
		req.DeviceID, req.Credential = old.DeviceID, old.Credential
	} else if !errclass.Is(err, errclass.NotFound) {
		return "", err
	}
	client := cfg.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	enr, err := PostEnroll(ctx, client, strings.TrimSuffix(cfg.Cloud, "/"), req)
	if err != nil {
		return "", err
	}
	if req.DeviceID != "" && enr.DeviceID != req.DeviceID {
		return "", errclass.Invalid("deviceId", "re-enrollment returned device id %q, not %q", enr.DeviceID, req.DeviceID)
	}
	if err := store.PutEnrollment(enr); err != nil {
		return "", fmt.Errorf("store enrollment: %w", err)
	}
	return enr.DeviceID, nil
}

// PostEnroll sends one enrollment request and validates the answer.
func PostEnroll(ctx context.Context, client *http.Client, cloud string, req EnrollRequest) (boltstore.Enrollment, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return boltstore.Enrollment{}, err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, cloud+"/api/v1/enroll", bytes.NewReader(body))
	if err != nil {
		return boltstore.Enrollment{}, errclass.Wrap(errclass.InvalidArgument, err, "cloud URL %q", cloud)
	}
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(hreq)
	if err != nil {
		return boltstore.Enrollment{}, errclass.Wrap(errclass.Unavailable, err, "enroll with %s", cloud)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxEnrollAnswer+1))
	if err != nil {
		return boltstore.Enrollment{}, errclass.Wrap(errclass.Unavailable, err, "read enrollment answer")
	}
	if len(raw) > maxEnrollAnswer {
		return boltstore.Enrollment{}, errclass.New(errclass.TooLarge, "", "enrollment answer larger than %d bytes", maxEnrollAnswer)
	}
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return boltstore.Enrollment{}, apiError(resp.StatusCode, raw)
	}
	return ParseEnrollment(raw)
}

// ParseEnrollment decodes and validates the cloud's Enrollment answer.
func ParseEnrollment(raw []byte) (boltstore.Enrollment, error) {
	var e boltstore.Enrollment
	if err := json.Unmarshal(raw, &e); err != nil {
		return boltstore.Enrollment{}, errclass.Wrap(errclass.InvalidArgument, err, "enrollment answer is not JSON")
	}
	if e.MQTT.Username == "" {
		e.MQTT.Username = e.DeviceID
	}
	if e.MQTT.Password == "" {
		e.MQTT.Password = e.Credential
	}
	u, err := url.Parse(e.MQTT.URL)
	switch {
	case !twin.ValidDeviceID(e.DeviceID):
		return boltstore.Enrollment{}, errclass.Invalid("deviceId", "device id %q is not valid", e.DeviceID)
	case e.Credential == "" || len(e.Credential) > 1024:
		return boltstore.Enrollment{}, errclass.Invalid("credential", "credential is empty or too long")
	case e.MQTT.URL == "" || err != nil || u.Host == "" || !validMQTTScheme(u.Scheme):
		return boltstore.Enrollment{}, errclass.Invalid("mqtt.url", "broker URL %q is not tcp://, ssl://, tls://, mqtt://, mqtts://, ws:// or wss://", e.MQTT.URL)
	}
	return e, nil
}

func validMQTTScheme(s string) bool {
	switch s {
	case "tcp", "ssl", "tls", "mqtt", "mqtts", "ws", "wss":
		return true
	}
	return false
}

// apiError turns the cloud's error body into a classified error.
func apiError(code int, raw []byte) error {
	var body struct {
		Error struct {
			Code, Message, Field string
		} `json:"error"`
	}
	_ = json.Unmarshal(raw, &body)
	class := errclass.Class(body.Error.Code)
	if class == "" {
		switch {
		case code == http.StatusUnauthorized:
			class = errclass.Unauthenticated
		case code == http.StatusForbidden:
			class = errclass.PermissionDenied
		case code >= 500:
			class = errclass.Unavailable
		default:
			class = errclass.InvalidArgument
		}
	}
	msg := body.Error.Message
	if msg == "" {
		msg = strings.TrimSpace(string(raw[:min(len(raw), 200)]))
	}
	return errclass.New(class, body.Error.Field, "enrollment refused (HTTP %d): %s", code, msg)
}
