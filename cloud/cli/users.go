package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/mlfleet/mlfleet/cloud"
	"github.com/mlfleet/mlfleet/cloud/client"
)

func (a *app) userCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "user",
		Aliases: []string{"users"},
		Short:   "Manage users (admin only)",
		Example: `  mlfleet user create ann --email ann@example.org
  mlfleet user list`,
	}
	groupCommand(cmd)

	var email string
	var admin bool
	create := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a user",
		Example: `  mlfleet user create ann --email ann@example.org
  mlfleet user create ci-bot --admin`,
		Args: exactName("user"),
	}
	create.Flags().StringVar(&email, "email", "", "the user's e-mail address")
	create.Flags().BoolVar(&admin, "admin", false, "make the user an administrator (may do everything)")
	cout := addOutput(create)
	create.RunE = a.run(func(cmd *cobra.Command, args []string) error {
		if err := checkFormat(*cout); err != nil {
			return err
		}
		c, err := a.client()
		if err != nil {
			return err
		}
		u, err := c.CreateUser(cmd.Context(), client.UserCreate{Name: args[0], Email: email, Admin: admin})
		if err != nil {
			return fmt.Errorf("create user %q: %w", args[0], err)
		}
		return userTable.print(a.env.Stdout, *cout, []cloud.User{*u}, true)
	})

	list := &cobra.Command{Use: "list", Short: "List users", Example: `  mlfleet user list -o json`, Args: cobra.NoArgs}
	lout := addOutput(list)
	list.RunE = a.run(func(cmd *cobra.Command, _ []string) error {
		if err := checkFormat(*lout); err != nil {
			return err
		}
		c, err := a.client()
		if err != nil {
			return err
		}
		us, err := c.ListAllUsers(cmd.Context())
		if err != nil {
			return fmt.Errorf("list users: %w", err)
		}
		return userTable.print(a.env.Stdout, *lout, us, false)
	})

	show := &cobra.Command{Use: "show NAME", Short: "Show a user", Example: `  mlfleet user show ann`, Args: exactName("user")}
	sout := addOutput(show)
	show.RunE = a.run(func(cmd *cobra.Command, args []string) error {
		if err := checkFormat(*sout); err != nil {
			return err
		}
		c, err := a.client()
		if err != nil {
			return err
		}
		u, err := c.GetUser(cmd.Context(), args[0])
		if err != nil {
			return fmt.Errorf("show user %q: %w", args[0], err)
		}
		return userTable.print(a.env.Stdout, *sout, []cloud.User{*u}, true)
	})

	del := &cobra.Command{
		Use:     "delete NAME",
		Short:   "Delete a user with its tokens and role assignments",
		Example: `  mlfleet user delete ann`,
		Args:    exactName("user"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.DeleteUser(cmd.Context(), args[0]); err != nil {
				return fmt.Errorf("delete user %q: %w", args[0], err)
			}
			fmt.Fprintf(a.env.Stdout, "Deleted user %s.\n", args[0])
			return nil
		}),
	}
	cmd.AddCommand(create, list, show, del)
	return cmd
}

// tokenUser returns the user whose tokens a token command works on:
// --user, else the caller.
func (a *app) tokenUser(cmd *cobra.Command, c *client.Client, user string) (string, error) {
	if user != "" {
		return user, nil
	}
	who, err := c.WhoAmI(cmd.Context())
	if err != nil {
		return "", fmt.Errorf("whoami: %w", err)
	}
	return who.User.Name, nil
}

func (a *app) tokenCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "token",
		Aliases: []string{"tokens"},
		Short:   "Manage API tokens (your own, or any user's as an admin)",
		Example: `  mlfleet token create --name ci --expires-in-hours 720
  mlfleet token list --user ann`,
	}
	groupCommand(cmd)
	var user string
	cmd.PersistentFlags().StringVar(&user, "user", "", "whose tokens (default: yours)")

	var name string
	var hours int
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a token; its secret is printed once and never again",
		Example: `  mlfleet token create --name laptop
  mlfleet token create --user ci-bot --name pipeline --expires-in-hours 720 -o json`,
		Args: cobra.NoArgs,
	}
	create.Flags().StringVar(&name, "name", "", "a name to recognize the token by")
	create.Flags().IntVar(&hours, "expires-in-hours", 0, "hours until the token expires (0: never)")
	cout := addOutput(create)
	create.RunE = a.run(func(cmd *cobra.Command, _ []string) error {
		if err := checkFormat(*cout); err != nil {
			return err
		}
		if hours < 0 {
			return usagef("invalid --expires-in-hours %d: must not be negative", hours)
		}
		c, err := a.client()
		if err != nil {
			return err
		}
		u, err := a.tokenUser(cmd, c, user)
		if err != nil {
			return err
		}
		t, err := c.CreateToken(cmd.Context(), u, client.TokenCreate{Name: name, ExpiresInHours: hours})
		if err != nil {
			return fmt.Errorf("create token for user %q: %w", u, err)
		}
		fmt.Fprintln(a.env.Stderr, "warning: the token's secret is shown only this once: store it now.")
		if *cout == formatJSON {
			return writeJSON(a.env.Stdout, t)
		}
		if err := tokenTable.print(a.env.Stdout, formatTable, []cloud.Token{*t}, true); err != nil {
			return err
		}
		fmt.Fprintf(a.env.Stdout, "\nToken: %s\n", t.Secret)
		return nil
	})

	list := &cobra.Command{
		Use:     "list",
		Short:   "List tokens (never their secrets)",
		Example: `  mlfleet token list --user ann -o json`,
		Args:    cobra.NoArgs,
	}
	lout := addOutput(list)
	list.RunE = a.run(func(cmd *cobra.Command, _ []string) error {
		if err := checkFormat(*lout); err != nil {
			return err
		}
		c, err := a.client()
		if err != nil {
			return err
		}
		u, err := a.tokenUser(cmd, c, user)
		if err != nil {
			return err
		}
		ts, err := c.ListAllTokens(cmd.Context(), u)
		if err != nil {
			return fmt.Errorf("list tokens of user %q: %w", u, err)
		}
		return tokenTable.print(a.env.Stdout, *lout, ts, false)
	})

	del := &cobra.Command{
		Use:     "delete ID",
		Short:   "Revoke a token",
		Example: `  mlfleet token delete tok-4f2a --user ann`,
		Args:    exactName("token ID"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			u, err := a.tokenUser(cmd, c, user)
			if err != nil {
				return err
			}
			if err := c.DeleteToken(cmd.Context(), u, args[0]); err != nil {
				return fmt.Errorf("delete token %q of user %q: %w", args[0], u, err)
			}
			fmt.Fprintf(a.env.Stdout, "Deleted token %s.\n", args[0])
			return nil
		}),
	}
	cmd.AddCommand(create, list, del)
	return cmd
}

// roleScope is the scope named by -s/-a/-w. Flags win over config defaults
// only as a whole: with -s given, -a and -w come from flags alone, so that
// "-s acme" means the subscription, not an account of the defaults.
func (a *app) roleScope() (*client.Client, client.Scope, error) {
	cfg, _, err := a.settings()
	if err != nil {
		return nil, client.Scope{}, err
	}
	s := client.Scope{Subscription: cfg.Subscription, Account: cfg.Account, Workspace: cfg.Workspace}
	if a.subFlag != "" || a.acctFlag != "" || a.wsFlag != "" {
		s = client.Scope{Subscription: cfg.Subscription, Account: a.acctFlag, Workspace: a.wsFlag}
		if a.wsFlag != "" && a.acctFlag == "" {
			s.Account = cfg.Account
		}
	}
	if s.Subscription == "" {
		return nil, s, usagef("no scope: pass -s NAME (and -a, -w for an account or workspace)")
	}
	if s.Workspace != "" && s.Account == "" {
		return nil, s, usagef("workspace %q needs an account: pass -a NAME", s.Workspace)
	}
	c, err := a.client()
	return c, s, err
}

func (a *app) roleCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "role",
		Aliases: []string{"roles"},
		Short:   "Grant, list and remove roles (Owner, Contributor, Reader) on a subscription, account or workspace",
		Example: `  mlfleet role assign ann --role Contributor -s acme -a models
  mlfleet role list -s acme`,
	}
	groupCommand(cmd)
	a.scopeFlags(cmd, needWs)

	var role string
	assign := &cobra.Command{
		Use:   "assign USER",
		Short: "Give USER a role on the scope (replacing the one USER had there)",
		Example: `  mlfleet role assign ann --role Reader -s acme
  mlfleet role assign bob --role Owner -s acme -a research -w vision`,
		Args: exactName("user"),
	}
	assign.Flags().StringVar(&role, "role", "", "Owner, Contributor or Reader (required)")
	_ = assign.MarkFlagRequired("role")
	aout := addOutput(assign)
	assign.RunE = a.run(func(cmd *cobra.Command, args []string) error {
		if err := checkFormat(*aout); err != nil {
			return err
		}
		c, s, err := a.roleScope()
		if err != nil {
			return err
		}
		ra, err := c.AssignRole(cmd.Context(), s, args[0], cloud.Role(role))
		if err != nil {
			return fmt.Errorf("assign role %q to user %q on %s: %w", role, args[0], s.Path(), err)
		}
		return roleTable.print(a.env.Stdout, *aout, []cloud.RoleAssignment{*ra}, true)
	})

	list := &cobra.Command{
		Use:     "list",
		Short:   "List the role assignments on the scope",
		Example: `  mlfleet role list -s acme -a models -o json`,
		Args:    cobra.NoArgs,
	}
	lout := addOutput(list)
	list.RunE = a.run(func(cmd *cobra.Command, _ []string) error {
		if err := checkFormat(*lout); err != nil {
			return err
		}
		c, s, err := a.roleScope()
		if err != nil {
			return err
		}
		ras, err := c.ListAllRoleAssignments(cmd.Context(), s)
		if err != nil {
			return fmt.Errorf("list role assignments on %s: %w", s.Path(), err)
		}
		return roleTable.print(a.env.Stdout, *lout, ras, false)
	})

	remove := &cobra.Command{
		Use:     "remove USER",
		Short:   "Remove USER's role on the scope",
		Example: `  mlfleet role remove ann -s acme -a models`,
		Args:    exactName("user"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			c, s, err := a.roleScope()
			if err != nil {
				return err
			}
			if err := c.RemoveRole(cmd.Context(), s, args[0]); err != nil {
				return fmt.Errorf("remove role of user %q on %s: %w", args[0], s.Path(), err)
			}
			fmt.Fprintf(a.env.Stdout, "Removed the role of %s on %s.\n", args[0], s.Path())
			return nil
		}),
	}
	cmd.AddCommand(assign, list, remove)
	return cmd
}
