package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mlfleet/mlfleet/cloud"
	"github.com/mlfleet/mlfleet/cloud/client"
	"github.com/mlfleet/mlfleet/shared/errclass"
	"github.com/mlfleet/mlfleet/shared/twin"
)

// parseLabels turns KEY=VALUE arguments or --label flags into a map; flag
// names the flag or argument in errors.
func parseLabels(flag string, kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, errclass.Invalid("label", "invalid %s %q: want KEY=VALUE", flag, kv)
		}
		if _, dup := m[k]; dup {
			return nil, errclass.Invalid("label", "%s key %q given twice", flag, k)
		}
		m[k] = v
	}
	return m, nil
}

// maxServicesFile caps the services file read by set-desired.
const maxServicesFile = twin.MaxDocument

// parseServices decodes a services file: a JSON array of service specs, or
// an object {"services": [...]}, strictly (unknown fields refused), and
// checks the specs as the device will.
func parseServices(b []byte) ([]twin.ServiceSpec, error) {
	if len(b) > maxServicesFile {
		return nil, errclass.New(errclass.TooLarge, "file", "services file of %d bytes is larger than %d", len(b), maxServicesFile)
	}
	trimmed := bytes.TrimSpace(b)
	if len(trimmed) == 0 {
		return nil, errclass.Invalid("file", `services file is empty: want a JSON array of services or {"services": [...]}`)
	}
	var specs []twin.ServiceSpec
	var err error
	switch trimmed[0] {
	case '[':
		err = decodeStrict(trimmed, &specs)
	case '{':
		var doc struct {
			Services *[]twin.ServiceSpec `json:"services"`
		}
		err = decodeStrict(trimmed, &doc)
		if err == nil && doc.Services == nil {
			return nil, errclass.Invalid("services", `services file has no "services" list`)
		}
		if doc.Services != nil {
			specs = *doc.Services
		}
	default:
		return nil, errclass.Invalid("file", `services file is not a JSON array of services or {"services": [...]}`)
	}
	if err != nil {
		return nil, errclass.Wrap(errclass.InvalidArgument, err, "services file")
	}
	if specs == nil {
		specs = []twin.ServiceSpec{}
	}
	// Check as the cloud and the device will, so mistakes fail here.
	d := twin.Desired{Protocol: twin.Protocol, Device: "check", Version: 1, Services: specs}
	raw, err := twin.Encode(&d)
	if err != nil {
		return nil, errclass.Wrap(errclass.InvalidArgument, err, "encode services")
	}
	var check twin.Desired
	if err := twin.Decode(raw, twin.MaxDocument, &check, "check"); err != nil {
		return nil, err
	}
	return specs, nil
}

func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data after the JSON value")
	}
	return nil
}

// readServicesFile reads the services file at path ("-": stdin).
func (a *app) readServicesFile(path string) ([]twin.ServiceSpec, error) {
	var r io.Reader
	if path == "-" {
		r = a.env.Stdin
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, errclass.Wrap(errclass.InvalidArgument, err, "--file")
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, maxServicesFile+1))
	if err != nil {
		return nil, errclass.Wrap(errclass.InvalidArgument, err, "--file %s", path)
	}
	specs, err := parseServices(b)
	if err != nil {
		return nil, fmt.Errorf("--file %s: %w", path, err)
	}
	return specs, nil
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	safe := s != ""
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:@%+=,", r)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// enrollCommand is what to run on a device to enroll it with tok.
func enrollCommand(cloudURL, token string) string {
	return "mlfleet-edge enroll --cloud " + shellQuote(cloudURL) + " --token " + shellQuote(token)
}

// printEnrollmentToken prints a new enrollment token, its secret and the
// command to run on the device.
func printEnrollmentToken(w io.Writer, t *cloud.EnrollmentToken, cloudURL string) error {
	if err := enrollTokenTable.print(w, formatTable, []cloud.EnrollmentToken{*t}, true); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\nToken: %s\n\nOn the device, run:\n  %s\n", t.Token, enrollCommand(cloudURL, t.Token))
	return err
}

// servicesSummary is "name:Phase,..." of what the device reports; an
// unhealthy service is marked "(unhealthy)".
func servicesSummary(d cloud.Device) string {
	if d.Reported == nil {
		return ""
	}
	parts := make([]string, 0, len(d.Reported.Services))
	for _, s := range d.Reported.Services {
		p := s.Name + ":" + string(s.Phase)
		if s.Phase == twin.Running && !s.Healthy {
			p += "(unhealthy)"
		}
		parts = append(parts, p)
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

func lastSeen(d cloud.Device) string {
	if d.LastSeen == nil {
		return "never"
	}
	return ts(*d.LastSeen)
}

var (
	enrollTokenTable = tabular[cloud.EnrollmentToken]{
		[]string{"ID", "ACCOUNT", "LABELS", "CREATED", "EXPIRES"},
		func(t cloud.EnrollmentToken) []string {
			return []string{t.ID, t.Subscription + "/" + t.Account, sortedTags(t.Labels), ts(t.CreatedAt), ts(t.ExpiresAt)}
		},
	}
	deviceTable = tabular[cloud.Device]{
		[]string{"ID", "NAME", "LABELS", "ONLINE", "LAST SEEN", "DESIRED", "OBSERVED", "SERVICES"},
		func(d cloud.Device) []string {
			var desired, observed string
			if d.Desired != nil {
				desired = strconv.FormatUint(d.Desired.Version, 10)
			}
			if d.Reported != nil {
				observed = strconv.FormatUint(d.Reported.ObservedVersion, 10)
			}
			return []string{d.ID, d.Name, sortedTags(d.Labels), strconv.FormatBool(d.Online), lastSeen(d),
				desired, observed, servicesSummary(d)}
		},
	}
)

// printDeviceDetails prints every field of a device, its desired services
// and what it reports of each.
func printDeviceDetails(w io.Writer, d *cloud.Device) error {
	rows := [][]string{
		{"ID:", d.ID}, {"Name:", d.Name}, {"Path:", d.Path},
		{"Labels:", sortedTags(d.Labels)}, {"Online:", strconv.FormatBool(d.Online)}, {"Last seen:", lastSeen(*d)},
		{"Created:", ts(d.CreatedAt) + " by " + cell(d.CreatedBy)}, {"Updated:", ts(d.UpdatedAt)},
	}
	if d.Desired == nil {
		rows = append(rows, []string{"Desired:", "none"})
	} else {
		rows = append(rows, []string{"Desired:", fmt.Sprintf("version %d, issued %s, %d service(s)", d.Desired.Version, ts(d.Desired.IssuedAt), len(d.Desired.Services))})
		for _, s := range d.Desired.Services {
			rows = append(rows, []string{"  Service:", specString(s)})
		}
	}
	if d.Reported == nil {
		rows = append(rows, []string{"Reported:", "never"})
	} else {
		r := d.Reported
		line := fmt.Sprintf("observed version %d, at %s", r.ObservedVersion, ts(r.Time))
		if r.Agent != "" {
			line += ", agent " + r.Agent
		}
		rows = append(rows, []string{"Reported:", line})
		for _, s := range r.Services {
			rows = append(rows, []string{"  Service:", statusString(s)})
		}
	}
	rows = append(rows,
		[]string{"Telemetry:", fmt.Sprintf("seq %d, dropped %d", d.TelemetrySeq, d.TelemetryDropped)},
		[]string{"Rejected:", strconv.FormatUint(d.Rejected, 10)},
	)
	return writeRows(w, rows)
}

func specString(s twin.ServiceSpec) string {
	parts := []string{s.Name, "image=" + s.Image}
	if s.Model != "" {
		parts = append(parts, "model="+s.Model)
	}
	if s.Port != 0 {
		parts = append(parts, "port="+strconv.Itoa(s.Port))
	}
	if s.Resources.MemoryBytes != 0 {
		parts = append(parts, "memory="+strconv.FormatInt(s.Resources.MemoryBytes, 10))
	}
	if s.Resources.CPUMillis != 0 {
		parts = append(parts, "cpu="+strconv.FormatInt(s.Resources.CPUMillis, 10)+"m")
	}
	return strings.Join(parts, " ")
}

func statusString(s twin.ServiceStatus) string {
	parts := []string{s.Name, "phase=" + string(s.Phase), "healthy=" + strconv.FormatBool(s.Healthy)}
	if s.Image != "" {
		parts = append(parts, "image="+s.Image)
	}
	if s.Wanted != "" {
		parts = append(parts, "wanted="+s.Wanted)
	}
	if !s.Since.IsZero() {
		parts = append(parts, "since="+ts(s.Since))
	}
	if s.Reason != "" {
		parts = append(parts, "reason="+strconv.Quote(s.Reason))
	}
	return strings.Join(parts, " ")
}

// exactDevice checks that a command got exactly one argument, the device ID.
func exactDevice(cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return usagef("%s needs exactly one argument, the device ID (got %d)", cmd.CommandPath(), len(args))
	}
	return nil
}

func (a *app) deviceCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "device",
		Aliases: []string{"devices"},
		Short:   "Enroll, list, label and delete devices, and set what they run",
		Example: `  mlfleet device enroll-token --label site=paris
  mlfleet device list --label site=paris
  mlfleet device set-desired d-3f2a9c0b1e4d -f services.json`,
	}
	groupCommand(cmd)
	a.scopeFlags(cmd, needAcct)

	var tokLabels []string
	var expires time.Duration
	token := &cobra.Command{
		Use:   "enroll-token",
		Short: "Create a one-time token with which one device enrolls (shown once)",
		Example: `  mlfleet device enroll-token
  mlfleet device enroll-token --label site=paris --label arch=arm64 --expires 2h`,
		Args: cobra.NoArgs,
	}
	token.Flags().StringArrayVar(&tokLabels, "label", nil, "KEY=VALUE label given to the device (repeatable)")
	token.Flags().DurationVar(&expires, "expires", 24*time.Hour, "how long the token can be used (at most 720h)")
	tout := addOutput(token)
	token.RunE = a.run(func(cmd *cobra.Command, _ []string) error {
		if err := checkFormat(*tout); err != nil {
			return err
		}
		labels, err := parseLabels("--label", tokLabels)
		if err != nil {
			return err
		}
		if expires <= 0 {
			return errclass.Invalid("expires", "invalid --expires %s: must be positive", expires)
		}
		c, cfg, err := a.scope(needAcct)
		if err != nil {
			return err
		}
		t, err := c.CreateEnrollmentToken(cmd.Context(), cfg.Subscription, cfg.Account,
			client.EnrollmentTokenCreate{Labels: labels, ExpiresInHours: expires.Hours()})
		if err != nil {
			return fmt.Errorf("create enrollment token in %s/%s: %w", cfg.Subscription, cfg.Account, err)
		}
		fmt.Fprintf(a.env.Stderr, "warning: the enrollment token is shown only this once; it enrolls one device until %s.\n", ts(t.ExpiresAt))
		if *tout == formatJSON {
			fmt.Fprintf(a.env.Stderr, "On the device, run:\n  %s\n", enrollCommand(c.BaseURL(), t.Token))
			return writeJSON(a.env.Stdout, t)
		}
		return printEnrollmentToken(a.env.Stdout, t, c.BaseURL())
	})

	var listLabels []string
	list := &cobra.Command{
		Use:   "list",
		Short: "List devices (only those with every --label, if given)",
		Example: `  mlfleet device list
  mlfleet device list --label site=paris --label arch=arm64 -o json`,
		Args: cobra.NoArgs,
	}
	list.Flags().StringArrayVar(&listLabels, "label", nil, "KEY=VALUE the devices must carry (repeatable)")
	lout := addOutput(list)
	list.RunE = a.run(func(cmd *cobra.Command, _ []string) error {
		if err := checkFormat(*lout); err != nil {
			return err
		}
		sel, err := parseLabels("--label", listLabels)
		if err != nil {
			return err
		}
		c, cfg, err := a.scope(needAcct)
		if err != nil {
			return err
		}
		ds, err := c.ListAllDevices(cmd.Context(), cfg.Subscription, cfg.Account, sel)
		if err != nil {
			return fmt.Errorf("list devices: %w", err)
		}
		return deviceTable.print(a.env.Stdout, *lout, ds, false)
	})

	show := showCmd(a, "device", &cobra.Command{
		Use:   "show ID",
		Short: "Show a device: labels, presence, desired and reported services",
		Example: `  mlfleet device show d-3f2a9c0b1e4d
  mlfleet device show d-3f2a9c0b1e4d -o json`,
		Args: exactDevice,
	}, byName((*client.Client).GetDevice), printDeviceDetails)

	var remove []string
	label := &cobra.Command{
		Use:   "label ID [KEY=VALUE]...",
		Short: "Set (KEY=VALUE) or remove (--remove KEY) labels of a device, keeping the others",
		Example: `  mlfleet device label d-3f2a9c0b1e4d site=paris arch=arm64
  mlfleet device label d-3f2a9c0b1e4d --remove site`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 {
				return usagef("%s needs the device ID, then KEY=VALUE labels", cmd.CommandPath())
			}
			return nil
		},
	}
	label.Flags().StringArrayVar(&remove, "remove", nil, "label KEY to remove (repeatable)")
	lbout := addOutput(label)
	label.RunE = a.run(func(cmd *cobra.Command, args []string) error {
		if err := checkFormat(*lbout); err != nil {
			return err
		}
		set, err := parseLabels("label", args[1:])
		if err != nil {
			return err
		}
		for _, k := range remove {
			if k == "" || strings.Contains(k, "=") {
				return errclass.Invalid("remove", "invalid --remove %q: want a label KEY", k)
			}
			if _, both := set[k]; both {
				return usagef("label %q is both set and removed", k)
			}
		}
		if len(set) == 0 && len(remove) == 0 {
			return usagef("nothing to change: pass KEY=VALUE labels or --remove KEY")
		}
		c, cfg, err := a.scope(needAcct)
		if err != nil {
			return err
		}
		d, err := c.GetDevice(cmd.Context(), cfg.Subscription, cfg.Account, args[0])
		if err != nil {
			return fmt.Errorf("label device %q: %w", args[0], err)
		}
		labels := make(map[string]string, len(d.Labels)+len(set))
		for k, v := range d.Labels {
			labels[k] = v
		}
		for _, k := range remove {
			if _, ok := labels[k]; !ok {
				fmt.Fprintf(a.env.Stderr, "note: device %s has no label %q\n", args[0], k)
			}
			delete(labels, k)
		}
		for k, v := range set {
			labels[k] = v
		}
		d, err = c.UpdateDeviceLabels(cmd.Context(), cfg.Subscription, cfg.Account, args[0], labels)
		if err != nil {
			return fmt.Errorf("label device %q: %w", args[0], err)
		}
		return deviceTable.print(a.env.Stdout, *lbout, []cloud.Device{*d}, true)
	})

	del := deleteCmd(a, "device", &cobra.Command{
		Use:     "delete ID",
		Short:   "Delete a device; its credential stops working at once",
		Example: `  mlfleet device delete d-3f2a9c0b1e4d`,
		Args:    exactDevice,
	}, removeByName((*client.Client).DeleteDevice))

	var file string
	setDesired := &cobra.Command{
		Use:   "set-desired ID -f FILE",
		Short: "Set the services a device must run (the next desired version)",
		Long: `Set the services a device must run. FILE ("-": stdin) holds a JSON array of
service specs, or an object {"services": [...]}; each spec has a name and an
image pinned by digest, and optionally model, port, env, resources and health.
An empty list stops every service on the device.`,
		Example: `  mlfleet device set-desired d-3f2a9c0b1e4d -f services.json
  echo '[{"name":"iris","image":"cloud:8480/acme/models/iris@sha256:<64 hex>"}]' | mlfleet device set-desired d-3f2a9c0b1e4d -f -`,
		Args: exactDevice,
	}
	setDesired.Flags().StringVarP(&file, "file", "f", "", `services file ("-": stdin; required)`)
	dout := addOutput(setDesired)
	setDesired.RunE = a.run(func(cmd *cobra.Command, args []string) error {
		if err := checkFormat(*dout); err != nil {
			return err
		}
		if file == "" {
			return usagef("set-desired needs -f FILE (a JSON array of services)")
		}
		specs, err := a.readServicesFile(file)
		if err != nil {
			return err
		}
		c, cfg, err := a.scope(needAcct)
		if err != nil {
			return err
		}
		d, err := c.SetDesiredServices(cmd.Context(), cfg.Subscription, cfg.Account, args[0], specs)
		if err != nil {
			return fmt.Errorf("set desired services of device %q: %w", args[0], err)
		}
		return deviceTable.print(a.env.Stdout, *dout, []cloud.Device{*d}, true)
	})

	cmd.AddCommand(token, list, show, label, del, setDesired)
	return cmd
}
