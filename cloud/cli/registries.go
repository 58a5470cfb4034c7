package cli

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/mlfleet/mlfleet/cloud"
	"github.com/mlfleet/mlfleet/cloud/client"
	"github.com/mlfleet/mlfleet/shared/errclass"
)

// maxRegistryPassword is the longest registry password read from stdin or
// a file (the cloud stores at most 4096 bytes).
const maxRegistryPassword = 4096

// readPassword reads a registry password from r (named what in errors):
// all of it, less one trailing newline ("\n" or "\r\n"). An empty or
// oversized password is bad input naming the field "password".
func readPassword(r io.Reader, what string) (string, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxRegistryPassword+3))
	if err != nil {
		return "", fmt.Errorf("read password from %s: %w", what, err)
	}
	b = bytes.TrimSuffix(b, []byte("\n"))
	b = bytes.TrimSuffix(b, []byte("\r"))
	switch {
	case len(b) == 0:
		return "", errclass.Invalid("password", "no password in %s", what)
	case len(b) > maxRegistryPassword:
		return "", errclass.Invalid("password", "password in %s is over %d bytes", what, maxRegistryPassword)
	}
	return string(b), nil
}

var registryTable = tabular[cloud.ExternalRegistry]{
	[]string{"NAME", "HOST", "PREFIX", "USERNAME", "PASSWORD", "DEVICES PULL AS", "INSECURE", "CREATED"},
	func(r cloud.ExternalRegistry) []string {
		pw := "-"
		if r.HasPassword {
			pw = "set"
		}
		return []string{r.Name, r.Host, r.Prefix, r.Username, pw, pullAs(r), strconv.FormatBool(r.Insecure), ts(r.CreatedAt)}
	},
}

// pullAs says how devices pull from r.
func pullAs(r cloud.ExternalRegistry) string {
	switch {
	case r.PullUsername != "" && r.HasPullPassword:
		return r.PullUsername + " (password set)"
	case r.PullUsername != "":
		return r.PullUsername
	case r.HasPullPassword:
		return "(password set)"
	}
	return "anonymous"
}

// printRegistryDetails prints an external registry; never its password.
func printRegistryDetails(w io.Writer, r *cloud.ExternalRegistry) error {
	pw := "none"
	if r.HasPassword {
		pw = "set (never shown)"
	}
	transport := "HTTPS"
	if r.Insecure {
		transport = "plain HTTP (insecure)"
	}
	return writeRows(w, [][]string{
		{"Name:", r.Name}, {"Path:", r.Path}, {"Host:", r.Host}, {"Prefix:", r.Prefix},
		{"Username:", r.Username}, {"Password:", pw}, {"Pull as:", pullAs(*r)}, {"Transport:", transport},
		{"Created:", ts(r.CreatedAt) + " by " + cell(r.CreatedBy)},
	})
}

func (a *app) registryCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "registry",
		Aliases: []string{"registries", "reg"},
		Short:   "Create, list, show and delete external registries that images can be pushed to",
		Long: `An external registry is a container registry of your own (a distribution
server, Harbor, a cloud provider's registry) that 'mlfleet image create
--registry NAME' pushes to instead of the cloud's embedded registry.

Its user name and password are stored by the cloud and used to push builds;
they never leave the cloud. Devices running an image from the registry pull
with the pull credential (--pull-username, --pull-password-file), or
anonymously without one: give them a read-only robot account limited to the
prefix's repositories, never a personal or admin account. Passwords are never
shown again once stored.`,
		Example: `  mlfleet registry create harbor --host registry.internal:5000 --prefix ml --username robot --password-file robot.pw
  mlfleet registry list
  mlfleet image create iris --manifest iris:1 --registry harbor`,
	}
	groupCommand(cmd)
	a.scopeFlags(cmd, needAcct)

	var host, prefix, username, pwFile, plainPassword, pullUser, pullPwFile string
	var pwStdin, insecure bool
	create := &cobra.Command{
		Use:   "create NAME --host HOST[:PORT] [--prefix P] [--username U] [--password-stdin | --password-file F] [--pull-username U --pull-password-file F] [--insecure]",
		Short: "Configure an external registry of the account (its password is never shown again)",
		Long: `Configure external registry NAME: images built with --registry NAME are
pushed to HOST[:PORT], under the repository path prefix --prefix if given
(image iris goes to HOST/PREFIX/iris).

The password is never a flag value (it would land in your shell history and
in the process list): give it on stdin with --password-stdin (one trailing
newline is dropped) or in a file with --password-file. That credential pushes
builds and stays in the cloud. Devices get the pull credential
(--pull-username, --pull-password-file): a read-only account; without one they
pull anonymously.

--insecure talks plain HTTP to the registry, without TLS: only for a registry
on a trusted network.`,
		Example: `  printf '%s' "$ROBOT_PASSWORD" | mlfleet registry create harbor --host registry.internal --prefix ml --username robot --password-stdin
  mlfleet registry create lab --host 10.0.0.5:5000 --username ci --password-file ci.pw --pull-username devices --pull-password-file devices.pw --insecure
  mlfleet registry create open --host registry.internal:5000 -o json`,
		Args: exactName("registry"),
	}
	create.Flags().StringVar(&host, "host", "", "registry host[:port], without scheme or path (required)")
	create.Flags().StringVar(&prefix, "prefix", "", "repository path prefix images are pushed under, e.g. team/ml")
	create.Flags().StringVar(&username, "username", "", "user name the cloud pushes builds with")
	create.Flags().BoolVar(&pwStdin, "password-stdin", false, "read the password from stdin (one trailing newline dropped)")
	create.Flags().StringVar(&pwFile, "password-file", "", "read the password from this file (one trailing newline dropped)")
	create.Flags().StringVar(&pullUser, "pull-username", "", "user name devices pull with (a read-only account)")
	create.Flags().StringVar(&pullPwFile, "pull-password-file", "", "read the devices' pull password from this file (one trailing newline dropped)")
	create.Flags().BoolVar(&insecure, "insecure", false, "talk plain HTTP to the registry (trusted networks only)")
	// --password is refused with a pointer to the safe ways, rather than
	// cobra's bare "unknown flag".
	create.Flags().StringVar(&plainPassword, "password", "", "refused: use --password-stdin or --password-file")
	_ = create.Flags().MarkHidden("password")
	cout := addOutput(create)
	create.RunE = a.run(func(cmd *cobra.Command, args []string) error {
		if err := checkFormat(*cout); err != nil {
			return err
		}
		if cmd.Flags().Changed("password") {
			return usagef("--password is not accepted (it would show in shell history and the process list): use --password-stdin or --password-file")
		}
		if host == "" {
			return usagef("registry create needs --host HOST[:PORT]")
		}
		if pwStdin && pwFile != "" {
			return usagef("pass either --password-stdin or --password-file, not both")
		}
		var password string
		var err error
		switch {
		case pwStdin:
			if a.env.Terminal {
				fmt.Fprint(a.env.Stderr, "password: ")
			}
			if password, err = readPassword(a.env.Stdin, "stdin"); err != nil {
				return err
			}
		case pwFile != "":
			f, err := os.Open(pwFile)
			if err != nil {
				return errclass.Wrap(errclass.InvalidArgument, err, "--password-file %q", pwFile)
			}
			password, err = readPassword(f, pwFile)
			f.Close()
			if err != nil {
				return err
			}
		}
		var pullPassword string
		if pullPwFile != "" {
			f, err := os.Open(pullPwFile)
			if err != nil {
				return errclass.Wrap(errclass.InvalidArgument, err, "--pull-password-file %q", pullPwFile)
			}
			pullPassword, err = readPassword(f, pullPwFile)
			f.Close()
			if err != nil {
				return err
			}
		}
		c, cfg, err := a.scope(needAcct)
		if err != nil {
			return err
		}
		r, err := c.CreateRegistry(cmd.Context(), cfg.Subscription, cfg.Account, client.RegistryCreate{
			Name: args[0], Host: host, Prefix: prefix, Username: username, Password: password,
			PullUsername: pullUser, PullPassword: pullPassword, Insecure: insecure})
		if err != nil {
			return fmt.Errorf("create registry %q: %w", args[0], err)
		}
		return registryTable.print(a.env.Stdout, *cout, []cloud.ExternalRegistry{*r}, true)
	})

	list := listAccountCmd(a, "List external registries (passwords are never shown)", registryTable,
		(*client.Client).ListAllRegistries, "  mlfleet registry list\n  mlfleet registry list -o json")

	show := showCmd(a, "registry", &cobra.Command{
		Use:   "show NAME",
		Short: "Show an external registry: host, prefix, user names and whether passwords are set",
		Example: `  mlfleet registry show harbor
  mlfleet registry show harbor -o json`,
		Args: exactName("registry"),
	}, byName((*client.Client).GetRegistry), printRegistryDetails)

	del := deleteCmd(a, "registry", &cobra.Command{
		Use:     "delete NAME",
		Short:   "Forget an external registry and its credentials (images pushed there stay)",
		Example: `  mlfleet registry delete harbor`,
		Args:    exactName("registry"),
	}, removeByName((*client.Client).DeleteRegistry))
	cmd.AddCommand(create, list, show, del)
	return cmd
}
