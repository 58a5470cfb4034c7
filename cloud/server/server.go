// Package server wires the cloud together: the bbolt store, the blob
// directory, the services and the REST API, on one HTTP listener. It is the
// one place where the cloud's adapters meet.
package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/mlfleet/mlfleet/cloud"
	"github.com/mlfleet/mlfleet/cloud/internal/blobstore"
	"github.com/mlfleet/mlfleet/cloud/internal/boltstore"
	"github.com/mlfleet/mlfleet/cloud/internal/broker"
	"github.com/mlfleet/mlfleet/cloud/internal/httpapi"
	"github.com/mlfleet/mlfleet/cloud/internal/mosquitto"
	"github.com/mlfleet/mlfleet/cloud/internal/mqttbus"
	"github.com/mlfleet/mlfleet/cloud/internal/registry"
	"github.com/mlfleet/mlfleet/shared/errclass"
)

// Config configures the cloud.
type Config struct {
	// DataDir holds the state file and blobs (default "./mlfleet-data").
	DataDir string
	// Addr is the HTTP listen address (default "127.0.0.1:8480"; port 0 picks one).
	Addr string
	// MaxModelBytes bounds one model upload (default 4 GiB).
	MaxModelBytes int64
	// Logger (default slog.Default()).
	Logger *slog.Logger
	// ShutdownGrace is how long Run waits for requests in flight (default 10s).
	ShutdownGrace time.Duration

	// MQTTAddr is where the embedded broker listens (default
	// "127.0.0.1:0": a free port; mlfleet-cloud's flag defaults to 1883).
	// Ignored with MQTTURL.
	MQTTAddr string
	// MQTTURL, if set, names an external broker (mosquitto...) instead of
	// the embedded one; MQTTUser and MQTTPassword are the cloud's login there.
	MQTTURL, MQTTUser, MQTTPassword string
	// AdvertiseURL and AdvertiseMQTT are what enrolling devices are told to
	// use (default: the listen addresses).
	AdvertiseURL, AdvertiseMQTT string
	// MosquittoDir, with MQTTURL, is where the cloud keeps the external
	// mosquitto's password, ACL and config files (include_dir it);
	// MosquittoPIDFile names mosquitto's pid file so it reloads on changes.
	MosquittoDir, MosquittoPIDFile string
	// RolloutTick is how often the rollout engine looks at rollouts when
	// nothing happens (default 1s; device reports wake it at once).
	RolloutTick time.Duration
	// ScorerDir holds the scorer binaries images are built with
	// (<dir>/linux-amd64/mlfleet-scorer, linux-arm64, linux-arm-v7; default
	// "scorers" beside the executable, where make build puts them).
	ScorerDir string
	// MosquittoListener is the listener written to the config snippet
	// (default: the host:port of MQTTURL).
	MosquittoListener string
}

func (c *Config) defaults() {
	if c.DataDir == "" {
		c.DataDir = "mlfleet-data"
	}
	if c.Addr == "" {
		c.Addr = "127.0.0.1:8480"
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = 10 * time.Second
	}
	if c.RolloutTick == 0 {
		c.RolloutTick = time.Second
	}
	if c.MQTTAddr == "" {
		c.MQTTAddr = "127.0.0.1:0"
	}
}

// Server is a running cloud.
type Server struct {
	cfg      Config
	store    *boltstore.Store
	svc      *cloud.Service
	api      *httpapi.API
	ln       net.Listener
	registry *registry.Registry
	// broker is the embedded MQTT broker (nil with an external one).
	broker *broker.Broker
	bus    *mqttbus.Bus

	closeOnce sync.Once
	closeErr  error
}

// New opens the data dir and binds the listener. It starts no goroutines;
// Run serves.
func New(cfg Config) (*Server, error) {
	cfg.defaults()
	if cfg.AdvertiseURL != "" {
		u, err := url.Parse(cfg.AdvertiseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return nil, errclass.Invalid("advertise-url", "advertise URL %q is not http(s)://host[:port]", cfg.AdvertiseURL)
		}
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	store, err := boltstore.Open(filepath.Join(cfg.DataDir, "cloud.db"), 5*time.Second)
	if err != nil {
		return nil, err
	}
	blobs, err := blobstore.Open(filepath.Join(cfg.DataDir, "blobs"))
	if err != nil {
		store.Close()
		return nil, err
	}
	svc := cloud.NewService(store, blobs, cloud.Config{MaxModelBytes: cfg.MaxModelBytes})
	reg, err := registry.New(context.Background(), registry.Config{RootDir: filepath.Join(cfg.DataDir, "registry"),
		Authorizer: registryAuth{svc}, Logger: cfg.Logger})
	if err != nil {
		store.Close()
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	api := httpapi.New(svc, httpapi.Options{Logger: cfg.Logger, Mounts: map[string]http.Handler{"/v2/": reg}})
	s := &Server{cfg: cfg, store: store, svc: svc, api: api, ln: ln, registry: reg}
	if err := s.newMQTT(); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.newBuilder(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// newMQTT sets up the embedded broker (unless an external one is named) and
// the cloud's client of it.
func (s *Server) newMQTT() error {
	url, user, pass := s.cfg.MQTTURL, s.cfg.MQTTUser, s.cfg.MQTTPassword
	if url == "" {
		var err error
		user = "mlfleet-cloud"
		if pass, err = randomSecret(); err != nil {
			return err
		}
		s.broker, err = broker.New(broker.Config{Addr: s.cfg.MQTTAddr, Auth: s.svc, CloudUser: user, CloudPassword: pass,
			Logger: s.cfg.Logger})
		if err != nil {
			return err
		}
		url = s.broker.URL()
	} else if s.cfg.MosquittoDir != "" {
		listener := s.cfg.MosquittoListener
		if listener == "" {
			listener = strings.TrimPrefix(url, "tcp://")
		}
		acc, err := mosquitto.New(mosquitto.Config{Dir: s.cfg.MosquittoDir, Listener: listener, CloudUser: user, CloudPassword: pass,
			PIDFile: s.cfg.MosquittoPIDFile, Credentials: s.svc.BrokerCredentials, Logger: s.cfg.Logger})
		if err != nil {
			return err
		}
		if err := acc.Write(context.Background()); err != nil {
			return err
		}
		s.svc.SetBrokerAccounts(acc)
	}
	busCfg := mqttbus.Config{URL: url, Username: user, Password: pass, Logger: s.cfg.Logger,
		OnConnect: s.svc.RepublishAllDesired,
		Handler: func(ctx context.Context, msgs []mqttbus.Message) {
			in := make([]cloud.DeviceMessage, len(msgs))
			for i, m := range msgs {
				in[i] = cloud.DeviceMessage{Topic: m.Topic, Payload: m.Payload}
			}
			for i, err := range s.svc.HandleDeviceMessages(ctx, in) {
				if err != nil {
					s.cfg.Logger.Debug("device message refused", "topic", msgs[i].Topic, "err", err)
				}
			}
		}}
	var bus *mqttbus.Bus
	var err error
	if s.broker != nil {
		bus, err = mqttbus.NewInline(s.broker, busCfg) // in process: no client queue, no TCP hop
	} else {
		bus, err = mqttbus.New(busCfg)
	}
	if err != nil {
		return err
	}
	s.bus = bus
	ep := cloud.Endpoints{Cloud: s.cfg.AdvertiseURL, MQTT: s.cfg.AdvertiseMQTT}
	ep.Registry, ep.RegistryPlainHTTP = s.registryHost()
	if ep.Cloud == "" {
		ep.Cloud = s.URL()
	}
	if ep.MQTT == "" {
		ep.MQTT = url
	}
	s.svc.SetDeviceBus(bus, ep)
	return nil
}

func randomSecret() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// MQTTURL is the URL of the broker the cloud uses.
func (s *Server) MQTTURL() string {
	if s.broker != nil {
		return s.broker.URL()
	}
	return s.cfg.MQTTURL
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// registryHost is the host[:port] of the embedded registry in image
// references and for devices (it is served on the API's listener): the
// advertised cloud URL's host, else the listen address; and whether it
// speaks plain HTTP.
func (s *Server) registryHost() (host string, plainHTTP bool) {
	if u, err := url.Parse(s.cfg.AdvertiseURL); err == nil && u.Host != "" {
		return u.Host, u.Scheme == "http"
	}
	return s.Addr(), true
}

// URL is the server's base URL.
func (s *Server) URL() string { return "http://" + s.Addr() }

// Service exposes the services (for in-process tools and tests).
func (s *Server) Service() *cloud.Service { return s.svc }

// Handler is the server's HTTP handler.
func (s *Server) Handler() http.Handler { return s.api }

// Run serves until ctx ends, then shuts down gracefully and closes the store.
func (s *Server) Run(ctx context.Context) error {
	srv := &http.Server{
		Handler:           s.api,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	bgCtx, stopBg := context.WithCancel(ctx)
	var wg sync.WaitGroup
	background := func(name string, run func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(bgCtx); err != nil {
				s.cfg.Logger.Error(name, "err", err)
			}
		}()
	}
	background("operations", func(ctx context.Context) error { return s.svc.RunOperations(ctx, 2) })
	background("rollouts", func(ctx context.Context) error { return s.svc.RunRollouts(ctx, s.cfg.RolloutTick) })
	background("desired-state retries", func(ctx context.Context) error { return s.svc.RunDesiredRetries(ctx, 2*time.Second) })
	if s.broker != nil {
		background("mqtt broker", s.broker.Run)
	}
	background("mqtt client", s.bus.Run)
	background("registry upload purge", func(ctx context.Context) error {
		t := time.NewTicker(time.Hour)
		defer t.Stop()
		for {
			if _, err := s.registry.PurgeUploads(ctx, 24*time.Hour); err != nil && ctx.Err() == nil {
				s.cfg.Logger.Warn("purge stale registry uploads", "err", err)
			}
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			}
		}
	})
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(s.ln) }()
	s.cfg.Logger.Info("mlfleet cloud serving", "url", s.URL(), "mqtt", s.MQTTURL(), "data", s.cfg.DataDir)
	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownGrace)
		err = srv.Shutdown(sctx)
		cancel()
		<-errc
	}
	stopBg()
	wg.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return errors.Join(err, s.Close())
}

// Close releases the listener and the store. It is idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		lerr := s.ln.Close()
		if errors.Is(lerr, net.ErrClosed) {
			lerr = nil
		}
		berr := s.registry.Close()
		if s.bus != nil {
			berr = errors.Join(berr, s.bus.Close())
		}
		if s.broker != nil {
			berr = errors.Join(berr, s.broker.Close())
		}
		s.closeErr = errors.Join(lerr, berr, s.store.Close())
	})
	return s.closeErr
}

// Init creates the first administrator in the data dir's store and writes its
// token to tokenFile (mode 0600). It refuses if the cloud has users.
func Init(ctx context.Context, dataDir, admin, email, tokenFile string) (*cloud.Token, error) {
	if dataDir == "" {
		dataDir = "mlfleet-data"
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	store, err := boltstore.Open(filepath.Join(dataDir, "cloud.db"), 5*time.Second)
	if err != nil {
		return nil, err
	}
	defer store.Close()
	blobs, err := blobstore.Open(filepath.Join(dataDir, "blobs"))
	if err != nil {
		return nil, err
	}
	tok, err := cloud.NewService(store, blobs, cloud.Config{}).Init(ctx, admin, email)
	if err != nil {
		return nil, err
	}
	if tokenFile != "" {
		if err := writeSecret(tokenFile, tok.Secret+"\n"); err != nil {
			return nil, err
		}
	}
	return tok, nil
}

// writeSecret writes a file only its owner can read, atomically.
func writeSecret(path, content string) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("token file: %w", err)
	}
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		return fmt.Errorf("token file: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// registryAuth lets the cloud's services decide registry requests.
type registryAuth struct{ svc *cloud.Service }

func (a registryAuth) AuthorizeRegistry(ctx context.Context, r *http.Request, repo string, push bool) error {
	return a.svc.AuthorizeRegistry(ctx, registry.Token(r), repo, push)
}
