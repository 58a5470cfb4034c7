package cli

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mlfleet/mlfleet/cloud"
	"github.com/mlfleet/mlfleet/cloud/client"
	"github.com/mlfleet/mlfleet/shared/errclass"
	"github.com/mlfleet/mlfleet/shared/twin"
)

// parseEnvVars turns --env KEY=VALUE flags into a map.
func parseEnvVars(kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, errclass.Invalid("env", "invalid --env %q: want KEY=VALUE", kv)
		}
		if _, dup := m[k]; dup {
			return nil, errclass.Invalid("env", "--env key %q given twice", k)
		}
		m[k] = v
	}
	return m, nil
}

// environmentDevices returns the devices an environment holds now: its one
// device (none if it was deleted), or every device its selector matches.
func environmentDevices(ctx context.Context, c *client.Client, cfg Config, e *cloud.Environment) ([]cloud.Device, error) {
	if e.Device == "" {
		return c.ListAllDevices(ctx, cfg.Subscription, cfg.Account, e.Selector)
	}
	d, err := c.GetDevice(ctx, cfg.Subscription, cfg.Account, e.Device)
	switch {
	case err == nil:
		return []cloud.Device{*d}, nil
	case errclass.ClassOf(err) == errclass.NotFound:
		return nil, nil
	}
	return nil, err
}

func environmentTarget(e cloud.Environment) string {
	if e.Device != "" {
		return "device " + e.Device
	}
	return sortedTags(e.Selector)
}

var (
	environmentTable = tabular[cloud.Environment]{
		[]string{"NAME", "DEVICES", "DESCRIPTION", "CREATED"},
		func(e cloud.Environment) []string {
			return []string{e.Name, environmentTarget(e), e.Description, ts(e.CreatedAt)}
		},
	}
	serviceTable = tabular[cloud.ScoringService]{
		[]string{"NAME", "ENVIRONMENT", "IMAGE", "PORT", "ROLLOUT", "PREVIOUS", "CREATED"},
		func(s cloud.ScoringService) []string {
			port := ""
			if s.Port != 0 {
				port = strconv.Itoa(s.Port)
			}
			return []string{s.Name, s.Environment, s.Image, port, s.Rollout, s.Previous, ts(s.CreatedAt)}
		},
	}
)

// printServiceDetails prints every field of a service.
func printServiceDetails(w io.Writer, s *cloud.ScoringService) error {
	port := "-"
	if s.Port != 0 {
		port = strconv.Itoa(s.Port)
	}
	rollout := "none in progress"
	if s.Rollout != "" {
		rollout = s.Rollout + " in progress"
	}
	rows := [][]string{
		{"Name:", s.Name}, {"Path:", s.Path}, {"Environment:", s.Environment},
		{"Image:", s.Image}, {"Reference:", s.ImageReference}, {"Previous:", s.Previous},
		{"Port:", port}, {"Env:", sortedTags(s.Env)}, {"Rollout:", rollout},
		{"Created:", ts(s.CreatedAt) + " by " + cell(s.CreatedBy)}, {"Updated:", ts(s.UpdatedAt)},
	}
	if s.Resources.MemoryBytes != 0 || s.Resources.CPUMillis != 0 {
		rows = append(rows, []string{"Resources:", fmt.Sprintf("memory=%d cpu=%dm", s.Resources.MemoryBytes, s.Resources.CPUMillis)})
	}
	return writeRows(w, rows)
}

func (a *app) environmentCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "environment",
		Aliases: []string{"environments", "env"},
		Short:   "Create, list, show and delete environments (one device, or a fleet by labels)",
		Example: `  mlfleet environment create paris --selector site=paris
  mlfleet environment create bench --device d-3f2a9c0b1e4d
  mlfleet environment list`,
	}
	groupCommand(cmd)
	a.scopeFlags(cmd, needAcct)

	var device, desc string
	var selector []string
	create := &cobra.Command{
		Use:   "create NAME (--device ID | --selector KEY=VALUE...)",
		Short: "Create an environment: one device, or every device carrying all the selector's labels",
		Example: `  mlfleet environment create paris --selector site=paris --selector tier=edge
  mlfleet environment create bench --device d-3f2a9c0b1e4d --description "lab bench"`,
		Args: exactName("environment"),
	}
	create.Flags().StringVar(&device, "device", "", "the one device of the environment")
	create.Flags().StringArrayVar(&selector, "selector", nil, "KEY=VALUE label the fleet's devices carry (repeatable)")
	create.Flags().StringVar(&desc, "description", "", "free text describing the environment")
	cout := addOutput(create)
	create.RunE = a.run(func(cmd *cobra.Command, args []string) error {
		if err := checkFormat(*cout); err != nil {
			return err
		}
		sel, err := parseLabels("--selector", selector)
		if err != nil {
			return err
		}
		if (device == "") == (len(sel) == 0) {
			return usagef("environment create needs --device ID or --selector KEY=VALUE, not both")
		}
		c, cfg, err := a.scope(needAcct)
		if err != nil {
			return err
		}
		e, err := c.CreateEnvironment(cmd.Context(), cfg.Subscription, cfg.Account,
			client.EnvironmentCreate{Name: args[0], Device: device, Selector: sel, Description: desc})
		if err != nil {
			return fmt.Errorf("create environment %q: %w", args[0], err)
		}
		return environmentTable.print(a.env.Stdout, *cout, []cloud.Environment{*e}, true)
	})

	list := listAccountCmd(a, "List environments", environmentTable, (*client.Client).ListAllEnvironments, "  mlfleet environment list -o json")

	show := &cobra.Command{
		Use:   "show NAME",
		Short: "Show an environment and the devices it holds now",
		Example: `  mlfleet environment show paris
  mlfleet environment show paris -o json`,
		Args: exactName("environment"),
	}
	sout := addOutput(show)
	show.RunE = a.run(func(cmd *cobra.Command, args []string) error {
		if err := checkFormat(*sout); err != nil {
			return err
		}
		c, cfg, err := a.scope(needAcct)
		if err != nil {
			return err
		}
		e, err := c.GetEnvironment(cmd.Context(), cfg.Subscription, cfg.Account, args[0])
		if err != nil {
			return fmt.Errorf("show environment %q: %w", args[0], err)
		}
		if *sout == formatJSON {
			return writeJSON(a.env.Stdout, e)
		}
		if err := environmentTable.print(a.env.Stdout, formatTable, []cloud.Environment{*e}, true); err != nil {
			return err
		}
		devs, err := environmentDevices(cmd.Context(), c, cfg, e)
		if err != nil {
			return fmt.Errorf("show environment %q: %w", args[0], err)
		}
		fmt.Fprintf(a.env.Stdout, "\n%d device(s):\n", len(devs))
		if len(devs) == 0 {
			return nil
		}
		return deviceTable.print(a.env.Stdout, formatTable, devs, false)
	})

	del := deleteCmd(a, "environment", &cobra.Command{
		Use:     "delete NAME",
		Short:   "Delete an environment no service uses",
		Example: `  mlfleet environment delete paris`,
		Args:    exactName("environment"),
	}, removeByName((*client.Client).DeleteEnvironment))
	cmd.AddCommand(create, list, show, del)
	return cmd
}

func (a *app) serviceCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "service",
		Aliases: []string{"services", "svc"},
		Short:   "Create, list, show and delete services (an image run as a REST endpoint on an environment)",
		Example: `  mlfleet service create iris --environment paris --image iris:1 --port 8080 --batch 10% --watch
  mlfleet service list
  mlfleet service show iris`,
	}
	groupCommand(cmd)
	a.scopeFlags(cmd, needAcct)

	var env, image string
	var port int
	var envVars []string
	var rf rolloutFlags
	create := &cobra.Command{
		Use:   "create NAME --environment ENV --image NAME:VERSION",
		Short: "Create a service and start its first rollout to every device of the environment",
		Example: `  mlfleet service create iris --environment paris --image iris:1 --port 8080
  mlfleet service create iris --environment paris --image iris:1 --env LOG=debug --batch 1 --batch 25% --soak 5m --watch`,
		Args: exactName("service"),
	}
	create.Flags().StringVar(&env, "environment", "", "environment the service runs in (required)")
	create.Flags().StringVar(&image, "image", "", "image version to run, NAME:VERSION (required)")
	create.Flags().IntVar(&port, "port", 0, "port the scoring endpoint listens on, on the device")
	create.Flags().StringArrayVar(&envVars, "env", nil, "KEY=VALUE environment variable of the service (repeatable)")
	rf.add(create)
	cout := addOutput(create)
	create.RunE = a.run(func(cmd *cobra.Command, args []string) error {
		if err := checkFormat(*cout); err != nil {
			return err
		}
		if env == "" || image == "" {
			return usagef("service create needs --environment ENV and --image NAME:VERSION")
		}
		if _, _, err := parseVersionedRef("image", image); err != nil {
			return err
		}
		if port < 0 || port > 65535 {
			return errclass.Invalid("port", "invalid --port %d: want 1-65535", port)
		}
		vars, err := parseEnvVars(envVars)
		if err != nil {
			return err
		}
		spec, set, err := rf.spec(cmd)
		if err != nil {
			return err
		}
		in := cloud.CreateServiceRequest{Name: args[0], Environment: env, Image: image, Port: port, Env: vars}
		if set {
			in.Rollout = &spec
		}
		c, cfg, err := a.scope(needAcct)
		if err != nil {
			return err
		}
		out, err := c.CreateService(cmd.Context(), cfg.Subscription, cfg.Account, in)
		if err != nil {
			return fmt.Errorf("create service %q: %w", args[0], err)
		}
		if rf.watch && out.Rollout != nil {
			if *cout == formatTable {
				if err := serviceTable.print(a.env.Stdout, formatTable, []cloud.ScoringService{out.Service}, true); err != nil {
					return err
				}
				fmt.Fprintln(a.env.Stdout)
			}
			return a.watchRollout(cmd.Context(), c, cfg, out.Service.Name, out.Rollout.ID, *cout)
		}
		if *cout == formatJSON {
			return writeJSON(a.env.Stdout, out)
		}
		if err := serviceTable.print(a.env.Stdout, formatTable, []cloud.ScoringService{out.Service}, true); err != nil {
			return err
		}
		if out.Rollout != nil {
			fmt.Fprintln(a.env.Stdout)
			return printRolloutStatus(a.env.Stdout, formatTable, out.Rollout)
		}
		return nil
	})

	list := listAccountCmd(a, "List services", serviceTable, (*client.Client).ListAllServices, "  mlfleet service list -o json")

	show := showCmd(a, "service", &cobra.Command{
		Use:   "show NAME",
		Short: "Show a service: environment, image, previous image, rollout in progress",
		Example: `  mlfleet service show iris
  mlfleet service show iris -o json`,
		Args: exactName("service"),
	}, byName((*client.Client).GetService), printServiceDetails)

	del := deleteCmd(a, "service", &cobra.Command{
		Use:     "delete NAME",
		Short:   "Delete a service and its rollout history; its devices stop it",
		Example: `  mlfleet service delete iris`,
		Args:    exactName("service"),
	}, removeByName((*client.Client).DeleteService))
	devices := &cobra.Command{
		Use:   "devices NAME",
		Short: "Show where a service runs: each device of its environment and what it reports for the service",
		Long: `List every device of the service's environment (evaluated now: devices
enrolled later with matching labels are included) with the image it reports
for the service: the service's image, its previous one, another, or none;
with the phase, health and reason it reports, and whether it is online.`,
		Example: `  mlfleet service devices iris
  mlfleet service devices iris -o json`,
		Args: exactName("service"),
	}
	dout := addOutput(devices)
	devices.RunE = a.run(func(cmd *cobra.Command, args []string) error {
		if err := checkFormat(*dout); err != nil {
			return err
		}
		c, cfg, err := a.scope(needAcct)
		if err != nil {
			return err
		}
		ctx := cmd.Context()
		svc, err := c.GetService(ctx, cfg.Subscription, cfg.Account, args[0])
		if err != nil {
			return fmt.Errorf("service devices %q: %w", args[0], err)
		}
		env, err := c.GetEnvironment(ctx, cfg.Subscription, cfg.Account, svc.Environment)
		if err != nil {
			return fmt.Errorf("service devices %q: environment %q: %w", args[0], svc.Environment, err)
		}
		devs, err := environmentDevices(ctx, c, cfg, env)
		if err != nil {
			return fmt.Errorf("service devices %q: %w", args[0], err)
		}
		rows := serviceOnDevices(svc, devs)
		if *dout == formatJSON {
			return writeJSON(a.env.Stdout, rows)
		}
		if err := serviceDeviceTable.print(a.env.Stdout, formatTable, rows, false); err != nil {
			return err
		}
		fmt.Fprintln(a.env.Stdout, serviceDevicesSummary(svc, rows))
		return nil
	})

	cmd.AddCommand(create, list, show, devices, del)
	return cmd
}

// ServiceOnDevice is what one device reports for a service.
type ServiceOnDevice struct {
	Device string `json:"device"`
	Online bool   `json:"online"`
	// Version names the reported image: the service's image ("iris:2"), its
	// previous one, or "" for another image (see Image) or none.
	Version string     `json:"version,omitempty"`
	Image   string     `json:"image,omitempty"`
	Phase   twin.Phase `json:"phase,omitempty"`
	Healthy bool       `json:"healthy"`
	Reason  string     `json:"reason,omitempty"`
	Since   *time.Time `json:"since,omitempty"`
}

// serviceOnDevices finds svc in what each device reports.
func serviceOnDevices(svc *cloud.ScoringService, devs []cloud.Device) []ServiceOnDevice {
	rows := make([]ServiceOnDevice, 0, len(devs))
	for _, d := range devs {
		r := ServiceOnDevice{Device: d.ID, Online: d.Online}
		if d.Reported != nil {
			for _, st := range d.Reported.Services {
				if st.Name != svc.Name {
					continue
				}
				r.Image, r.Phase, r.Healthy, r.Reason = st.Image, st.Phase, st.Healthy, st.Reason
				if !st.Since.IsZero() {
					since := st.Since
					r.Since = &since
				}
				switch {
				case st.Image == "":
				case st.Image == svc.ImageReference:
					r.Version = svc.Image
				case st.Image == svc.PreviousReference:
					r.Version = svc.Previous
				}
			}
		}
		rows = append(rows, r)
	}
	slices.SortFunc(rows, func(a, b ServiceOnDevice) int { return strings.Compare(a.Device, b.Device) })
	return rows
}

var serviceDeviceTable = tabular[ServiceOnDevice]{
	[]string{"DEVICE", "ONLINE", "VERSION", "PHASE", "HEALTHY", "SINCE", "REASON"},
	func(r ServiceOnDevice) []string {
		version := r.Version
		switch {
		case r.Version == "" && r.Image != "":
			version = "other: " + r.Image
		case r.Image == "":
			version = "none"
		}
		since := ""
		if r.Since != nil {
			since = ts(*r.Since)
		}
		return []string{r.Device, strconv.FormatBool(r.Online), version, string(r.Phase), strconv.FormatBool(r.Healthy), since, r.Reason}
	},
}

// serviceDevicesSummary counts the devices by what they run.
func serviceDevicesSummary(svc *cloud.ScoringService, rows []ServiceOnDevice) string {
	var current, healthy, previous, other, none, offline int
	for _, r := range rows {
		switch {
		case r.Image == "":
			none++
		case r.Image == svc.ImageReference:
			current++
			if r.Healthy {
				healthy++
			}
		case r.Version != "":
			previous++
		default:
			other++
		}
		if !r.Online {
			offline++
		}
	}
	out := fmt.Sprintf("\n%d device(s): %d run %s (%d healthy)", len(rows), current, svc.Image, healthy)
	if previous > 0 {
		out += fmt.Sprintf(", %d run the previous %s", previous, svc.Previous)
	}
	if other > 0 {
		out += fmt.Sprintf(", %d another image", other)
	}
	if none > 0 {
		out += fmt.Sprintf(", %d none", none)
	}
	if offline > 0 {
		out += fmt.Sprintf("; %d offline", offline)
	}
	return out + "."
}
