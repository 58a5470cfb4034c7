package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/mlfleet/mlfleet/shared/errclass"
)

// Config is the CLI's config file: where the cloud is, the token, and the
// defaults that spare -s/-a/-w flags.
type Config struct {
	Cloud        string `json:"cloud,omitempty"`
	Token        string `json:"token,omitempty"`
	Subscription string `json:"subscription,omitempty"`
	Account      string `json:"account,omitempty"`
	Workspace    string `json:"workspace,omitempty"`
}

// maxConfigSize caps the config file read.
const maxConfigSize = 1 << 20

// configPath returns the config file's path: $MLFLEET_CONFIG, else
// $XDG_CONFIG_HOME/mlfleet/config.json, else ~/.config/mlfleet/config.json.
func (a *app) configPath() (string, error) {
	if p := a.getenv("MLFLEET_CONFIG"); p != "" {
		return p, nil
	}
	if d := a.getenv("XDG_CONFIG_HOME"); d != "" {
		return filepath.Join(d, "mlfleet", "config.json"), nil
	}
	home := a.getenv("HOME")
	if home == "" {
		return "", errclass.Invalid("HOME", "cannot place the config file: set MLFLEET_CONFIG, XDG_CONFIG_HOME or HOME")
	}
	return filepath.Join(home, ".config", "mlfleet", "config.json"), nil
}

// parseConfig decodes a config file strictly.
func parseConfig(b []byte) (Config, error) {
	var c Config
	if len(bytes.TrimSpace(b)) == 0 {
		return c, nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Config{}, errclass.Wrap(errclass.InvalidArgument, err, "parse config")
	}
	if dec.More() {
		return Config{}, errclass.Invalid("config", "parse config: trailing data after the JSON object")
	}
	return c, nil
}

// loadConfig reads the config file; a missing file is an empty config.
func loadConfig(path string) (Config, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Config{}, nil
	}
	if err != nil {
		return Config{}, errclass.Wrap(errclass.Unknown, err, "read config file")
	}
	defer f.Close()
	b := make([]byte, 0, 512)
	buf := bytes.NewBuffer(b)
	if _, err := buf.ReadFrom(io.LimitReader(f, maxConfigSize+1)); err != nil {
		return Config{}, errclass.Wrap(errclass.Unknown, err, "read config file %s", path)
	}
	if buf.Len() > maxConfigSize {
		return Config{}, errclass.New(errclass.TooLarge, "config", "config file %s is larger than %d bytes", path, maxConfigSize)
	}
	c, err := parseConfig(buf.Bytes())
	if err != nil {
		return Config{}, &errclass.Error{Class: errclass.InvalidArgument, Field: "config", Msg: "config file " + path, Err: err}
	}
	return c, nil
}

// saveConfig writes c to path atomically, readable by its owner only.
func saveConfig(path string, c Config) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return errclass.Wrap(errclass.Unknown, err, "encode config")
	}
	b = append(b, '\n')
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return errclass.Wrap(errclass.Unknown, err, "create config directory %s", dir)
	}
	tmp, err := os.CreateTemp(dir, ".config-*.json")
	if err != nil {
		return errclass.Wrap(errclass.Unknown, err, "write config file %s", path)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return errclass.Wrap(errclass.Unknown, err, "write config file %s", path)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return errclass.Wrap(errclass.Unknown, err, "write config file %s", path)
	}
	if err := tmp.Close(); err != nil {
		return errclass.Wrap(errclass.Unknown, err, "write config file %s", path)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return errclass.Wrap(errclass.Unknown, err, "write config file %s", path)
	}
	return nil
}

// settings returns the config file's contents overridden by the
// environment and then by flags, and the file's path.
func (a *app) settings() (Config, string, error) {
	path, err := a.configPath()
	if err != nil {
		return Config{}, "", err
	}
	c, err := loadConfig(path)
	if err != nil {
		return Config{}, "", err
	}
	if v := a.getenv("MLFLEET_CLOUD"); v != "" {
		c.Cloud = v
	}
	if v := a.getenv("MLFLEET_TOKEN"); v != "" {
		c.Token = v
	}
	if a.cloudFlag != "" {
		c.Cloud = a.cloudFlag
	}
	if a.tokenFlag != "" {
		c.Token = a.tokenFlag
	}
	if a.subFlag != "" {
		c.Subscription = a.subFlag
	}
	if a.acctFlag != "" {
		c.Account = a.acctFlag
	}
	if a.wsFlag != "" {
		c.Workspace = a.wsFlag
	}
	return c, path, nil
}
