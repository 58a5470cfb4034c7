// Package cli implements the mlfleet command line, a client of the cloud
// REST API (cloud/client). New builds the command tree and Main runs it
// in-process, so tests drive the real CLI with their own stdin/stdout/stderr
// and environment.
//
// Exit codes: 0 success; 1 failure (server, network, not found, ...);
// 2 bad usage or invalid input. Errors are printed as one line on stderr:
// "error: <message> (field: <field>)".
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mlfleet/mlfleet/cloud/client"
	"github.com/mlfleet/mlfleet/shared/errclass"
)

// Exit codes returned by Main.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
)

// Env is what the CLI sees of its process: standard streams and environment.
type Env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Getenv reads an environment variable; nil reads none.
	Getenv func(string) string
	// Terminal reports that Stderr is a terminal: progress is drawn as a bar.
	Terminal bool
}

// OSEnv returns the process's own streams and environment.
func OSEnv() Env {
	return Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv, Terminal: isTerminal(os.Stderr)}
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// usageError marks bad usage of the command line (exit code 2).
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// app holds the state shared by the commands of one command tree.
type app struct {
	env     Env
	running bool // a command's own code has started: later errors are not usage errors

	cloudFlag, tokenFlag string
	subFlag, acctFlag    string
	wsFlag               string
}

func (a *app) getenv(k string) string {
	if a.env.Getenv == nil {
		return ""
	}
	return a.env.Getenv(k)
}

// run wraps a command's code so that errors from it are told apart from
// errors cobra finds before it (bad flags, arguments).
func (a *app) run(fn func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		a.running = true
		return fn(cmd, args)
	}
}

// New builds the mlfleet command tree writing to env's streams.
func New(env Env) *cobra.Command {
	_, root := newApp(env)
	return root
}

func newApp(env Env) (*app, *cobra.Command) {
	if env.Stdin == nil {
		env.Stdin = strings.NewReader("")
	}
	if env.Stdout == nil {
		env.Stdout = io.Discard
	}
	if env.Stderr == nil {
		env.Stderr = io.Discard
	}
	a := &app{env: env}
	root := &cobra.Command{
		Use:   "mlfleet",
		Short: "Manage models, manifests, images, devices, services, rollouts and tenants of an mlfleet cloud",
		Long: `mlfleet is the command line of an mlfleet cloud: it registers models, creates
manifests, builds images, enrolls devices, deploys services to environments of
devices through health-gated rollouts, and manages subscriptions,
accounts, workspaces, projects, users, tokens and roles over the cloud's REST
API.

Log in once with 'mlfleet login'; the cloud URL, token and default
subscription/account/workspace live in the config file ($MLFLEET_CONFIG, or
$XDG_CONFIG_HOME/mlfleet/config.json). MLFLEET_CLOUD and MLFLEET_TOKEN override
the file; --cloud and --token override both.`,
		Example: `  mlfleet login --cloud http://127.0.0.1:8480 --token-file admin.token
  mlfleet config set subscription acme
  mlfleet model register model.onnx --name iris -a models`,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetIn(env.Stdin)
	root.SetOut(env.Stdout)
	root.SetErr(env.Stderr)
	root.CompletionOptions.DisableDefaultCmd = true
	root.PersistentFlags().StringVar(&a.cloudFlag, "cloud", "", "cloud URL (overrides $MLFLEET_CLOUD and the config file)")
	root.PersistentFlags().StringVar(&a.tokenFlag, "token", "", "API token (overrides $MLFLEET_TOKEN and the config file)")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })
	groupCommand(root)

	root.AddCommand(
		a.loginCmd(), a.logoutCmd(), a.whoamiCmd(), a.configCmd(),
		a.subscriptionCmd(), a.accountCmd(), a.workspaceCmd(), a.projectCmd(),
		a.userCmd(), a.tokenCmd(), a.roleCmd(),
		a.modelCmd(), a.manifestCmd(), a.deviceCmd(), a.operationCmd(),
		a.imageCmd(), a.environmentCmd(), a.serviceCmd(), a.rolloutCmd(),
		a.registryCmd(),
	)
	root.InitDefaultHelpCmd()
	for _, c := range root.Commands() {
		if c.Name() == "help" {
			c.Example = "  mlfleet help model register"
		}
	}
	return a, root
}

// groupCommand makes cmd, which only holds subcommands, print its help when
// called alone and refuse unknown subcommands as bad usage.
func groupCommand(cmd *cobra.Command) {
	cmd.Args = func(c *cobra.Command, args []string) error {
		if len(args) > 0 {
			return usagef("unknown command %q for %q", args[0], c.CommandPath())
		}
		return nil
	}
	cmd.RunE = func(c *cobra.Command, _ []string) error { return c.Help() }
}

// Main runs the command line with args (without the program name) and
// returns the process exit code.
func Main(ctx context.Context, args []string, env Env) int {
	a, root := newApp(env)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	if !a.running {
		err = &usageError{err} // found by cobra before any command ran: flags, arguments
	}
	fmt.Fprintln(root.ErrOrStderr(), errorLine(err))
	return ExitCode(err)
}

// ExitCode maps an error returned by a command to the process exit code.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var ue *usageError
	if errors.As(err, &ue) {
		return ExitUsage
	}
	switch errclass.ClassOf(err) {
	case errclass.InvalidArgument, errclass.TooLarge:
		return ExitUsage
	}
	return ExitFailure
}

// errorLine formats err as the one line printed on stderr.
func errorLine(err error) string {
	msg := strings.Join(strings.Fields(err.Error()), " ")
	if f := errclass.FieldOf(err); f != "" {
		return fmt.Sprintf("error: %s (field: %s)", msg, f)
	}
	return "error: " + msg
}

// client returns an API client for the resolved cloud and token.
func (a *app) client() (*client.Client, error) {
	cfg, _, err := a.settings()
	if err != nil {
		return nil, err
	}
	if cfg.Cloud == "" {
		return nil, usagef("no cloud URL: run 'mlfleet login --cloud URL' or set MLFLEET_CLOUD")
	}
	if cfg.Token == "" {
		return nil, errclass.New(errclass.Unauthenticated, "token", "not logged in: run 'mlfleet login' or set MLFLEET_TOKEN")
	}
	return client.New(cfg.Cloud, cfg.Token, client.WithUserAgent("mlfleet-cli"))
}
