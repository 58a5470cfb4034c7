package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/mlfleet/mlfleet/cloud"
	"github.com/mlfleet/mlfleet/cloud/client"
)

// scope levels a command needs.
const (
	needSub = 1 + iota
	needAcct
	needWs
)

// scopeFlags registers -s (and -a, -w as level asks) as persistent flags of a
// command group.
func (a *app) scopeFlags(cmd *cobra.Command, level int) {
	pf := cmd.PersistentFlags()
	if level < needSub {
		return
	}
	pf.StringVarP(&a.subFlag, "subscription", "s", "", "subscription (default: config 'subscription')")
	if level >= needAcct {
		pf.StringVarP(&a.acctFlag, "account", "a", "", "account (default: config 'account')")
	}
	if level >= needWs {
		pf.StringVarP(&a.wsFlag, "workspace", "w", "", "workspace (default: config 'workspace')")
	}
}

// scope resolves the subscription/account/workspace a command works in and
// returns a client.
func (a *app) scope(level int) (*client.Client, Config, error) {
	cfg, _, err := a.settings()
	if err != nil {
		return nil, cfg, err
	}
	if level >= needSub && cfg.Subscription == "" {
		return nil, cfg, usagef("no subscription: pass -s NAME or run 'mlfleet config set subscription NAME'")
	}
	if level >= needAcct && cfg.Account == "" {
		return nil, cfg, usagef("no account: pass -a NAME or run 'mlfleet config set account NAME'")
	}
	if level >= needWs && cfg.Workspace == "" {
		return nil, cfg, usagef("no workspace: pass -w NAME or run 'mlfleet config set workspace NAME'")
	}
	c, err := a.client()
	return c, cfg, err
}

// crud describes one resource kind for the generic create/list/show/update/delete commands.
type crud[T any] struct {
	kind     string // "subscription"
	level    int    // scope the resource lives in (0: top level)
	table    tabular[T]
	examples map[string]string
	create   func(cmd *cobra.Command, c *client.Client, cfg Config, name, desc string) (*T, error)
	list     func(cmd *cobra.Command, c *client.Client, cfg Config) ([]T, error)
	get      func(cmd *cobra.Command, c *client.Client, cfg Config, name string) (*T, error)
	update   func(cmd *cobra.Command, c *client.Client, cfg Config, name string, desc *string) (*T, error)
	del      func(cmd *cobra.Command, c *client.Client, cfg Config, name string, force bool) error
	// createFlags adds kind-specific flags to the create command.
	createFlags func(cmd *cobra.Command)
	// updateFlags adds kind-specific flags, named in updateFields, to the update command.
	updateFlags  func(cmd *cobra.Command)
	updateFields []string
}

func exactName(kind string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != 1 {
			return usagef("%s needs exactly one argument, the %s name (got %d)", cmd.CommandPath(), kind, len(args))
		}
		return nil
	}
}

func (r crud[T]) commands(a *app, group *cobra.Command) {
	a.scopeFlags(group, r.level)
	var desc string
	create := &cobra.Command{
		Use:     "create NAME",
		Short:   fmt.Sprintf("Create a %s", r.kind),
		Example: r.examples["create"],
		Args:    exactName(r.kind),
	}
	create.Flags().StringVar(&desc, "description", "", "free text describing the "+r.kind)
	if r.createFlags != nil {
		r.createFlags(create)
	}
	cout := addOutput(create)
	create.RunE = a.run(func(cmd *cobra.Command, args []string) error {
		if err := checkFormat(*cout); err != nil {
			return err
		}
		c, cfg, err := a.scope(r.level)
		if err != nil {
			return err
		}
		v, err := r.create(cmd, c, cfg, args[0], desc)
		if err != nil {
			return fmt.Errorf("create %s %q: %w", r.kind, args[0], err)
		}
		return r.table.print(a.env.Stdout, *cout, []T{*v}, true)
	})

	list := &cobra.Command{
		Use:     "list",
		Short:   fmt.Sprintf("List %ss", r.kind),
		Example: r.examples["list"],
		Args:    cobra.NoArgs,
	}
	lout := addOutput(list)
	list.RunE = a.run(func(cmd *cobra.Command, _ []string) error {
		if err := checkFormat(*lout); err != nil {
			return err
		}
		c, cfg, err := a.scope(r.level)
		if err != nil {
			return err
		}
		items, err := r.list(cmd, c, cfg)
		if err != nil {
			return fmt.Errorf("list %ss: %w", r.kind, err)
		}
		return r.table.print(a.env.Stdout, *lout, items, false)
	})

	show := &cobra.Command{
		Use:     "show NAME",
		Short:   fmt.Sprintf("Show a %s", r.kind),
		Example: r.examples["show"],
		Args:    exactName(r.kind),
	}
	sout := addOutput(show)
	show.RunE = a.run(func(cmd *cobra.Command, args []string) error {
		if err := checkFormat(*sout); err != nil {
			return err
		}
		c, cfg, err := a.scope(r.level)
		if err != nil {
			return err
		}
		v, err := r.get(cmd, c, cfg, args[0])
		if err != nil {
			return fmt.Errorf("show %s %q: %w", r.kind, args[0], err)
		}
		return r.table.print(a.env.Stdout, *sout, []T{*v}, true)
	})

	var newDesc string
	update := &cobra.Command{
		Use:     "update NAME",
		Short:   fmt.Sprintf("Change a %s", r.kind),
		Example: r.examples["update"],
		Args:    exactName(r.kind),
	}
	update.Flags().StringVar(&newDesc, "description", "", "new description")
	if r.updateFlags != nil {
		r.updateFlags(update)
	}
	uout := addOutput(update)
	update.RunE = a.run(func(cmd *cobra.Command, args []string) error {
		if err := checkFormat(*uout); err != nil {
			return err
		}
		var d *string
		if cmd.Flags().Changed("description") {
			d = &newDesc
		}
		changed := d != nil
		for _, f := range r.updateFields {
			changed = changed || cmd.Flags().Changed(f)
		}
		if !changed {
			return usagef("nothing to update: pass --description")
		}
		c, cfg, err := a.scope(r.level)
		if err != nil {
			return err
		}
		v, err := r.update(cmd, c, cfg, args[0], d)
		if err != nil {
			return fmt.Errorf("update %s %q: %w", r.kind, args[0], err)
		}
		return r.table.print(a.env.Stdout, *uout, []T{*v}, true)
	})

	var force bool
	del := &cobra.Command{
		Use:     "delete NAME",
		Short:   fmt.Sprintf("Delete a %s (--force: with everything in it)", r.kind),
		Example: r.examples["delete"],
		Args:    exactName(r.kind),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			c, cfg, err := a.scope(r.level)
			if err != nil {
				return err
			}
			if err := r.del(cmd, c, cfg, args[0], force); err != nil {
				return fmt.Errorf("delete %s %q: %w", r.kind, args[0], err)
			}
			fmt.Fprintf(a.env.Stdout, "Deleted %s %s.\n", r.kind, args[0])
			return nil
		}),
	}
	del.Flags().BoolVar(&force, "force", false, "also delete everything the "+r.kind+" contains")
	group.AddCommand(create, list, show, update, del)
}

func (a *app) subscriptionCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "subscription",
		Aliases: []string{"sub", "subscriptions"},
		Short:   "Manage subscriptions, the top-level tenants",
		Example: `  mlfleet subscription create acme --description "Acme Corp"
  mlfleet subscription list -o json`,
	}
	groupCommand(cmd)
	crud[cloud.Subscription]{
		kind: "subscription", level: 0, table: subscriptionTable,
		examples: map[string]string{
			"create": `  mlfleet subscription create acme --description "Acme Corp"`,
			"list":   `  mlfleet subscription list`,
			"show":   `  mlfleet subscription show acme -o json`,
			"update": `  mlfleet subscription update acme --description "Acme Corporation"`,
			"delete": `  mlfleet subscription delete acme --force`,
		},
		create: func(cmd *cobra.Command, c *client.Client, _ Config, name, desc string) (*cloud.Subscription, error) {
			return c.CreateSubscription(cmd.Context(), client.SubscriptionCreate{Name: name, Description: desc})
		},
		list: func(cmd *cobra.Command, c *client.Client, _ Config) ([]cloud.Subscription, error) {
			return c.ListAllSubscriptions(cmd.Context())
		},
		get: func(cmd *cobra.Command, c *client.Client, _ Config, name string) (*cloud.Subscription, error) {
			return c.GetSubscription(cmd.Context(), name)
		},
		update: func(cmd *cobra.Command, c *client.Client, _ Config, name string, d *string) (*cloud.Subscription, error) {
			return c.UpdateSubscription(cmd.Context(), name, client.Update{Description: d})
		},
		del: func(cmd *cobra.Command, c *client.Client, _ Config, name string, force bool) error {
			return c.DeleteSubscription(cmd.Context(), name, force)
		},
	}.commands(a, cmd)
	return cmd
}

func (a *app) accountCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "account",
		Aliases: []string{"accounts"},
		Short:   "Manage experimentation and model management accounts of a subscription",
		Example: `  mlfleet account create models --kind modelmanagement -s acme
  mlfleet account list -s acme`,
	}
	groupCommand(cmd)
	var kind string
	crud[cloud.Account]{
		kind: "account", level: needSub, table: accountTable,
		examples: map[string]string{
			"create": `  mlfleet account create models --kind modelmanagement -s acme
  mlfleet account create research --kind experimentation`,
			"list":   `  mlfleet account list -s acme -o json`,
			"show":   `  mlfleet account show models -s acme`,
			"update": `  mlfleet account update models --description "production models"`,
			"delete": `  mlfleet account delete research --force`,
		},
		createFlags: func(c *cobra.Command) {
			c.Flags().StringVar(&kind, "kind", "", "account kind: experimentation or modelmanagement (required)")
			_ = c.MarkFlagRequired("kind")
		},
		create: func(cmd *cobra.Command, c *client.Client, cfg Config, name, desc string) (*cloud.Account, error) {
			return c.CreateAccount(cmd.Context(), cfg.Subscription, client.AccountCreate{Name: name, Kind: cloud.AccountKind(kind), Description: desc})
		},
		list: func(cmd *cobra.Command, c *client.Client, cfg Config) ([]cloud.Account, error) {
			return c.ListAllAccounts(cmd.Context(), cfg.Subscription)
		},
		get: func(cmd *cobra.Command, c *client.Client, cfg Config, name string) (*cloud.Account, error) {
			return c.GetAccount(cmd.Context(), cfg.Subscription, name)
		},
		update: func(cmd *cobra.Command, c *client.Client, cfg Config, name string, d *string) (*cloud.Account, error) {
			return c.UpdateAccount(cmd.Context(), cfg.Subscription, name, client.Update{Description: d})
		},
		del: func(cmd *cobra.Command, c *client.Client, cfg Config, name string, force bool) error {
			return c.DeleteAccount(cmd.Context(), cfg.Subscription, name, force)
		},
	}.commands(a, cmd)
	return cmd
}

func (a *app) workspaceCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "workspace",
		Aliases: []string{"ws", "workspaces"},
		Short:   "Manage workspaces of an experimentation account",
		Example: `  mlfleet workspace create vision -s acme -a research
  mlfleet workspace list`,
	}
	groupCommand(cmd)
	crud[cloud.Workspace]{
		kind: "workspace", level: needAcct, table: workspaceTable,
		examples: map[string]string{
			"create": `  mlfleet workspace create vision -s acme -a research --description "image models"`,
			"list":   `  mlfleet workspace list -s acme -a research`,
			"show":   `  mlfleet workspace show vision -o json`,
			"update": `  mlfleet workspace update vision --description "vision team"`,
			"delete": `  mlfleet workspace delete vision --force`,
		},
		create: func(cmd *cobra.Command, c *client.Client, cfg Config, name, desc string) (*cloud.Workspace, error) {
			return c.CreateWorkspace(cmd.Context(), cfg.Subscription, cfg.Account, client.WorkspaceCreate{Name: name, Description: desc})
		},
		list: func(cmd *cobra.Command, c *client.Client, cfg Config) ([]cloud.Workspace, error) {
			return c.ListAllWorkspaces(cmd.Context(), cfg.Subscription, cfg.Account)
		},
		get: func(cmd *cobra.Command, c *client.Client, cfg Config, name string) (*cloud.Workspace, error) {
			return c.GetWorkspace(cmd.Context(), cfg.Subscription, cfg.Account, name)
		},
		update: func(cmd *cobra.Command, c *client.Client, cfg Config, name string, d *string) (*cloud.Workspace, error) {
			return c.UpdateWorkspace(cmd.Context(), cfg.Subscription, cfg.Account, name, client.Update{Description: d})
		},
		del: func(cmd *cobra.Command, c *client.Client, cfg Config, name string, force bool) error {
			return c.DeleteWorkspace(cmd.Context(), cfg.Subscription, cfg.Account, name, force)
		},
	}.commands(a, cmd)
	return cmd
}

func (a *app) projectCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "project",
		Aliases: []string{"projects"},
		Short:   "Manage projects (folders, optionally git repositories) of a workspace",
		Example: `  mlfleet project create churn --folder ./churn --git-remote git@example.org:ds/churn.git -w vision
  mlfleet project list -s acme -a research -w vision`,
	}
	groupCommand(cmd)
	var folder, remote, newFolder, newRemote string
	crud[cloud.Project]{
		kind: "project", level: needWs, table: projectTable,
		examples: map[string]string{
			"create": `  mlfleet project create churn --folder ./churn --git-remote git@example.org:ds/churn.git`,
			"list":   `  mlfleet project list -s acme -a research -w vision`,
			"show":   `  mlfleet project show churn -o json`,
			"update": `  mlfleet project update churn --description "churn prediction"
  mlfleet project update churn --folder src/churn2 --git-remote ""`,
			"delete": `  mlfleet project delete churn`,
		},
		createFlags: func(c *cobra.Command) {
			c.Flags().StringVar(&folder, "folder", "", "the project's folder")
			c.Flags().StringVar(&remote, "git-remote", "", "the project's git remote")
		},
		updateFlags: func(c *cobra.Command) {
			c.Flags().StringVar(&newFolder, "folder", "", "new folder")
			c.Flags().StringVar(&newRemote, "git-remote", "", "new git remote (empty: none)")
		},
		updateFields: []string{"folder", "git-remote"},
		create: func(cmd *cobra.Command, c *client.Client, cfg Config, name, desc string) (*cloud.Project, error) {
			return c.CreateProject(cmd.Context(), cfg.Subscription, cfg.Account, cfg.Workspace,
				client.ProjectCreate{Name: name, Folder: folder, GitRemote: remote, Description: desc})
		},
		list: func(cmd *cobra.Command, c *client.Client, cfg Config) ([]cloud.Project, error) {
			return c.ListAllProjects(cmd.Context(), cfg.Subscription, cfg.Account, cfg.Workspace)
		},
		get: func(cmd *cobra.Command, c *client.Client, cfg Config, name string) (*cloud.Project, error) {
			return c.GetProject(cmd.Context(), cfg.Subscription, cfg.Account, cfg.Workspace, name)
		},
		update: func(cmd *cobra.Command, c *client.Client, cfg Config, name string, d *string) (*cloud.Project, error) {
			in := client.ProjectUpdate{Description: d}
			if cmd.Flags().Changed("folder") {
				in.Folder = &newFolder
			}
			if cmd.Flags().Changed("git-remote") {
				in.GitRemote = &newRemote
			}
			return c.UpdateProject(cmd.Context(), cfg.Subscription, cfg.Account, cfg.Workspace, name, in)
		},
		del: func(cmd *cobra.Command, c *client.Client, cfg Config, name string, force bool) error {
			return c.DeleteProject(cmd.Context(), cfg.Subscription, cfg.Account, cfg.Workspace, name, force)
		},
	}.commands(a, cmd)
	return cmd
}
