package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/mlfleet/mlfleet/shared/errclass"
	"github.com/mlfleet/mlfleet/shared/twin"
)

// TokenSource hands out one-time enrollment tokens, one per call; it must
// be safe for concurrent use. The cloud's tokens are one-time, so Enroll
// asks for a fresh one for every device (mlfleet-sim creates them through
// the REST API as it goes).
type TokenSource func(ctx context.Context) (string, error)

// Tokens returns a TokenSource handing out the given tokens in order, then
// failing.
func Tokens(tokens []string) TokenSource {
	var mu sync.Mutex
	next := 0
	return func(context.Context) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		if next >= len(tokens) {
			return "", errclass.Invalid("tokens", "only %d enrollment tokens were given", len(tokens))
		}
		next++
		return tokens[next-1], nil
	}
}

// maxEnrollAnswer bounds the cloud's answer to an enrollment.
const maxEnrollAnswer = 64 << 10

// enrollRequest is the body of POST /api/v1/enroll.
type enrollRequest struct {
	Token string `json:"token"`
	Name  string `json:"name,omitempty"`
}

// Enroll enrolls n devices with the cloud at cloudURL (POST /api/v1/enroll),
// concurrency at a time, each with its own token from tokens, and names them
// sim-00000, sim-00001, .... It returns their identities in that order, or
// the first error (the devices enrolled before it stay enrolled).
func Enroll(ctx context.Context, cloudURL string, tokens TokenSource, n, concurrency int) ([]Identity, error) {
	base, err := url.Parse(cloudURL)
	switch {
	case err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "":
		return nil, errclass.Invalid("cloud", "cloud URL %q is not an http(s) URL", cloudURL)
	case tokens == nil:
		return nil, errclass.Invalid("tokens", "no token source")
	case n < 1:
		return nil, errclass.Invalid("n", "device count %d is below 1", n)
	case concurrency < 1:
		return nil, errclass.Invalid("concurrency", "concurrency %d is below 1", concurrency)
	}
	endpoint := strings.TrimSuffix(cloudURL, "/") + "/api/v1/enroll"
	hc := &http.Client{Timeout: 30 * time.Second}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	out := make([]Identity, n)
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range min(concurrency, n) {
		wg.Go(func() {
			for i := range jobs {
				id, err := enrollOne(ctx, hc, endpoint, tokens, fmt.Sprintf("sim-%05d", i))
				if err != nil {
					cancel(fmt.Errorf("enroll device %d of %d: %w", i+1, n, err))
					continue
				}
				out[i] = id
			}
		})
	}
feed:
	for i := range n {
		select {
		case jobs <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	return out, nil
}

func enrollOne(ctx context.Context, hc *http.Client, endpoint string, tokens TokenSource, name string) (Identity, error) {
	tok, err := tokens(ctx)
	if err != nil {
		return Identity{}, fmt.Errorf("get an enrollment token: %w", err)
	}
	body, err := json.Marshal(enrollRequest{Token: tok, Name: name})
	if err != nil {
		return Identity{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return Identity{}, errclass.Wrap(errclass.InvalidArgument, err, "enroll URL %q", endpoint)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return Identity{}, errclass.Wrap(errclass.Unavailable, err, "enroll with %s", endpoint)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxEnrollAnswer+1))
	if err != nil {
		return Identity{}, errclass.Wrap(errclass.Unavailable, err, "read the enrollment answer")
	}
	if len(raw) > maxEnrollAnswer {
		return Identity{}, errclass.New(errclass.TooLarge, "", "enrollment answer is larger than %d bytes", maxEnrollAnswer)
	}
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return Identity{}, APIError(resp.StatusCode, raw)
	}
	return ParseEnrollment(raw)
}

// ParseEnrollment decodes and checks the cloud's Enrollment answer (an
// untrusted document): a valid device id, a credential, a broker URL.
// Fields this package does not need are ignored.
func ParseEnrollment(raw []byte) (Identity, error) {
	var e struct {
		DeviceID   string `json:"deviceId"`
		Credential string `json:"credential"`
		MQTT       struct {
			URL      string `json:"url"`
			Username string `json:"username"`
			Password string `json:"password"`
		} `json:"mqtt"`
	}
	if len(raw) > maxEnrollAnswer {
		return Identity{}, errclass.New(errclass.TooLarge, "", "enrollment answer is larger than %d bytes", maxEnrollAnswer)
	}
	if err := json.Unmarshal(raw, &e); err != nil {
		return Identity{}, errclass.Wrap(errclass.InvalidArgument, err, "enrollment answer is not JSON")
	}
	u, err := url.Parse(e.MQTT.URL)
	switch {
	case !twin.ValidDeviceID(e.DeviceID):
		return Identity{}, errclass.Invalid("deviceId", "device id %q is not valid", e.DeviceID)
	case e.Credential == "" || len(e.Credential) > 1024:
		return Identity{}, errclass.Invalid("credential", "credential of %d bytes is empty or longer than 1024", len(e.Credential))
	case e.MQTT.Username != "" && e.MQTT.Username != e.DeviceID:
		return Identity{}, errclass.Invalid("mqtt.username", "broker user %q is not the device id %q", e.MQTT.Username, e.DeviceID)
	case e.MQTT.Password != "" && e.MQTT.Password != e.Credential:
		return Identity{}, errclass.Invalid("mqtt.password", "broker password is not the device credential")
	case e.MQTT.URL != "" && (err != nil || u.Host == ""):
		return Identity{}, errclass.Invalid("mqtt.url", "broker URL %q has no host", e.MQTT.URL)
	}
	return Identity{ID: e.DeviceID, Credential: e.Credential, MQTTURL: e.MQTT.URL}, nil
}

// APIError turns a cloud error answer ({"error":{"code","message","field"}})
// into a classified error.
func APIError(status int, raw []byte) error {
	var body struct {
		Error struct {
			Code, Message, Field string
		} `json:"error"`
	}
	_ = json.Unmarshal(raw, &body)
	class := errclass.Class(body.Error.Code)
	switch class {
	case errclass.NotFound, errclass.InvalidArgument, errclass.Conflict, errclass.Unauthenticated, errclass.PermissionDenied,
		errclass.FailedPrecondition, errclass.Unavailable, errclass.TooLarge, errclass.Unknown:
	default:
		switch {
		case status == http.StatusUnauthorized:
			class = errclass.Unauthenticated
		case status == http.StatusForbidden:
			class = errclass.PermissionDenied
		case status == http.StatusNotFound:
			class = errclass.NotFound
		case status >= 500:
			class = errclass.Unavailable
		default:
			class = errclass.InvalidArgument
		}
	}
	msg := body.Error.Message
	if msg == "" {
		msg = strings.TrimSpace(string(raw[:min(len(raw), 200)]))
	}
	return errclass.New(class, body.Error.Field, "cloud refused (HTTP %d): %s", status, msg)
}

// CloudTokens returns a TokenSource that creates each token through the
// cloud's REST API (POST .../accounts/{acct}/enrollmentTokens), with an API
// token allowed to (Contributor on the model management account). Devices
// enrolled with them get labels. Tokens live one hour.
func CloudTokens(cloudURL, apiToken, subscription, account string, labels map[string]string) (TokenSource, error) {
	base, err := url.Parse(cloudURL)
	switch {
	case err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "":
		return nil, errclass.Invalid("cloud", "cloud URL %q is not an http(s) URL", cloudURL)
	case apiToken == "" || strings.ContainsAny(apiToken, "\r\n"):
		return nil, errclass.Invalid("token", "API token is empty or has a line break")
	case subscription == "":
		return nil, errclass.Invalid("subscription", "subscription is empty")
	case account == "":
		return nil, errclass.Invalid("account", "account is empty")
	}
	endpoint := strings.TrimSuffix(cloudURL, "/") + "/api/v1/subscriptions/" + url.PathEscape(subscription) +
		"/accounts/" + url.PathEscape(account) + "/enrollmentTokens"
	body, err := json.Marshal(struct {
		Labels         map[string]string `json:"labels,omitempty"`
		ExpiresInHours float64           `json:"expiresInHours"`
	}{labels, 1})
	if err != nil {
		return nil, err
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	return func(ctx context.Context) (string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
		if err != nil {
			return "", errclass.Wrap(errclass.InvalidArgument, err, "token URL %q", endpoint)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+apiToken)
		resp, err := hc.Do(req)
		if err != nil {
			return "", errclass.Wrap(errclass.Unavailable, err, "create an enrollment token at %s", endpoint)
		}
		defer resp.Body.Close()
		raw, err := io.ReadAll(io.LimitReader(resp.Body, maxEnrollAnswer+1))
		if err != nil {
			return "", errclass.Wrap(errclass.Unavailable, err, "read the enrollment token answer")
		}
		if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("create an enrollment token in %s/%s: %w", subscription, account, APIError(resp.StatusCode, raw))
		}
		var out struct {
			Token string `json:"token"`
		}
		if err := json.Unmarshal(raw, &out); err != nil || out.Token == "" || len(out.Token) > 1024 {
			return "", errclass.Invalid("token", "enrollment token answer has no token (%v)", err)
		}
		return out.Token, nil
	}, nil
}
