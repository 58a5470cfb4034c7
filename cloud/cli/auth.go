package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mlfleet/mlfleet/cloud/client"
	"github.com/mlfleet/mlfleet/shared/errclass"
	"github.com/mlfleet/mlfleet/shared/manifest"
)

// readToken reads a token: the first line of r, trimmed.
func readToken(r io.Reader, what string) (string, error) {
	line, err := bufio.NewReader(io.LimitReader(r, 64<<10)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read token from %s: %w", what, err)
	}
	tok := strings.TrimSpace(line)
	if tok == "" {
		return "", usagef("no token in %s: pass --token, --token-file or the token on stdin", what)
	}
	return tok, nil
}

func (a *app) loginCmd() *cobra.Command {
	var tokenFile string
	cmd := &cobra.Command{
		Use:   "login",
		Short: "Check a token against the cloud and save both in the config file",
		Long: `login checks the token with the cloud (whoami) and writes the cloud URL and
token to the config file, readable only by you (mode 0600). The token comes
from --token, --token-file, or the first line of stdin.`,
		Example: `  mlfleet login --cloud http://127.0.0.1:8480 --token-file ~/admin.token
  echo "$TOKEN" | mlfleet login --cloud https://mlfleet.internal`,
		Args: cobra.NoArgs,
		RunE: a.run(func(cmd *cobra.Command, _ []string) error {
			cfg, path, err := a.settings()
			if err != nil {
				return err
			}
			if cfg.Cloud == "" {
				return usagef("no cloud URL: pass --cloud URL or set MLFLEET_CLOUD")
			}
			tok := a.tokenFlag
			switch {
			case tok != "" && tokenFile != "":
				return usagef("pass either --token or --token-file, not both")
			case tok != "":
			case tokenFile != "":
				f, err := os.Open(tokenFile)
				if err != nil {
					return errclass.Wrap(errclass.InvalidArgument, err, "--token-file %q", tokenFile)
				}
				tok, err = readToken(f, tokenFile)
				f.Close()
				if err != nil {
					return err
				}
			default:
				if a.env.Terminal {
					fmt.Fprint(a.env.Stderr, "token: ")
				}
				if tok, err = readToken(a.env.Stdin, "stdin"); err != nil {
					return err
				}
			}
			c, err := client.New(cfg.Cloud, tok, client.WithUserAgent("mlfleet-cli"))
			if err != nil {
				return err
			}
			who, err := c.WhoAmI(cmd.Context())
			if err != nil {
				return fmt.Errorf("check token with %s: %w", cfg.Cloud, err)
			}
			old, err := loadConfig(path)
			if err != nil {
				return err
			}
			next := Config{Cloud: cfg.Cloud, Token: tok}
			if old.Cloud == cfg.Cloud { // same cloud: keep the defaults
				next.Subscription, next.Account, next.Workspace = old.Subscription, old.Account, old.Workspace
			}
			if err := saveConfig(path, next); err != nil {
				return err
			}
			fmt.Fprintf(a.env.Stdout, "Logged in to %s as %s (config: %s)\n", cfg.Cloud, who.User.Name, path)
			return nil
		}),
	}
	cmd.Flags().StringVar(&tokenFile, "token-file", "", "read the token from this file's first line")
	return cmd
}

func (a *app) logoutCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "logout",
		Short:   "Forget the token saved by login",
		Example: `  mlfleet logout`,
		Args:    cobra.NoArgs,
		RunE: a.run(func(cmd *cobra.Command, _ []string) error {
			path, err := a.configPath()
			if err != nil {
				return err
			}
			cfg, err := loadConfig(path)
			if err != nil {
				return err
			}
			if cfg.Token == "" {
				fmt.Fprintln(a.env.Stdout, "Not logged in.")
				return nil
			}
			cfg.Token = ""
			if err := saveConfig(path, cfg); err != nil {
				return err
			}
			fmt.Fprintf(a.env.Stdout, "Logged out of %s.\n", cfg.Cloud)
			return nil
		}),
	}
}

func (a *app) whoamiCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "whoami",
		Short: "Show the user the token belongs to and its roles",
		Example: `  mlfleet whoami
  mlfleet whoami -o json`,
		Args: cobra.NoArgs,
	}
	out := addOutput(cmd)
	cmd.RunE = a.run(func(cmd *cobra.Command, _ []string) error {
		if err := checkFormat(*out); err != nil {
			return err
		}
		c, err := a.client()
		if err != nil {
			return err
		}
		who, err := c.WhoAmI(cmd.Context())
		if err != nil {
			return fmt.Errorf("whoami: %w", err)
		}
		if *out == formatJSON {
			return writeJSON(a.env.Stdout, who)
		}
		admin := ""
		if who.User.Admin {
			admin = " (admin)"
		}
		fmt.Fprintf(a.env.Stdout, "User: %s%s\n", who.User.Name, admin)
		if len(who.RoleAssignments) == 0 {
			return nil
		}
		fmt.Fprintln(a.env.Stdout)
		return roleTable.print(a.env.Stdout, formatTable, who.RoleAssignments, false)
	})
	return cmd
}

// configKeys are the settings `config set|get` know.
var configKeys = []string{"cloud", "subscription", "account", "workspace"}

func configField(c *Config, key string) (*string, error) {
	switch key {
	case "cloud":
		return &c.Cloud, nil
	case "subscription":
		return &c.Subscription, nil
	case "account":
		return &c.Account, nil
	case "workspace":
		return &c.Workspace, nil
	}
	return nil, usagef("unknown config key %q: want one of %s", key, strings.Join(configKeys, ", "))
}

func (a *app) configCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Show and change the config file (cloud URL, default subscription, account, workspace)",
		Example: `  mlfleet config set subscription acme
  mlfleet config get account
  mlfleet config show -o json`,
	}
	groupCommand(cmd)
	set := &cobra.Command{
		Use:   "set KEY VALUE",
		Short: "Set a default (cloud, subscription, account, workspace); an empty VALUE clears it",
		Example: `  mlfleet config set subscription acme
  mlfleet config set account models
  mlfleet config set workspace ""`,
		Args: cobra.ExactArgs(2),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			path, err := a.configPath()
			if err != nil {
				return err
			}
			cfg, err := loadConfig(path)
			if err != nil {
				return err
			}
			f, err := configField(&cfg, args[0])
			if err != nil {
				return err
			}
			v := args[1]
			if v != "" {
				if args[0] == "cloud" {
					if _, err := client.New(v, ""); err != nil {
						return err
					}
				} else if err := manifest.CheckName(args[0], v); err != nil {
					return err
				}
			}
			*f = v
			return saveConfig(path, cfg)
		}),
	}
	get := &cobra.Command{
		Use:     "get KEY",
		Short:   "Print one setting, as overridden by environment and flags",
		Example: `  mlfleet config get subscription`,
		Args:    cobra.ExactArgs(1),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			cfg, _, err := a.settings()
			if err != nil {
				return err
			}
			f, err := configField(&cfg, args[0])
			if err != nil {
				return err
			}
			fmt.Fprintln(a.env.Stdout, *f)
			return nil
		}),
	}
	show := &cobra.Command{
		Use:   "show",
		Short: "Print every setting and where the config file is (the token is masked)",
		Example: `  mlfleet config show
  mlfleet config show -o json`,
		Args: cobra.NoArgs,
	}
	out := addOutput(show)
	show.RunE = a.run(func(cmd *cobra.Command, _ []string) error {
		if err := checkFormat(*out); err != nil {
			return err
		}
		cfg, path, err := a.settings()
		if err != nil {
			return err
		}
		cfg.Token = maskToken(cfg.Token)
		if *out == formatJSON {
			return writeJSON(a.env.Stdout, struct {
				Path string `json:"path"`
				Config
			}{path, cfg})
		}
		return writeTable(a.env.Stdout, []string{"KEY", "VALUE"}, [][]string{
			{"path", path}, {"cloud", cfg.Cloud}, {"token", cfg.Token},
			{"subscription", cfg.Subscription}, {"account", cfg.Account}, {"workspace", cfg.Workspace},
		})
	})
	cmd.AddCommand(set, get, show)
	return cmd
}

func maskToken(t string) string {
	if t == "" {
		return ""
	}
	if len(t) <= 8 {
		return "****"
	}
	return "****" + t[len(t)-4:]
}
