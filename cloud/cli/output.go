package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mlfleet/mlfleet/cloud"
	"github.com/mlfleet/mlfleet/cloud/client"
)

// Output formats of -o.
const (
	formatTable = "table"
	formatJSON  = "json"
)

// addOutput registers -o/--output on cmd and returns where its value lands.
func addOutput(cmd *cobra.Command) *string {
	v := new(string)
	cmd.Flags().StringVarP(v, "output", "o", formatTable, "output format: table or json")
	return v
}

func checkFormat(f string) error {
	if f != formatTable && f != formatJSON {
		return usagef("invalid --output %q: want table or json", f)
	}
	return nil
}

// writeJSON prints v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode output: %w", err)
	}
	b = append(b, '\n')
	_, err = w.Write(b)
	return err
}

// writeTable prints rows under header as aligned columns.
func writeTable(w io.Writer, header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		for i := range r {
			r[i] = cell(r[i])
		}
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// cell makes s safe for one table cell: no tabs or line breaks, never empty.
func cell(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if s == "" {
		return "-"
	}
	return s
}

func ts(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// tabular is a resource kind that can be printed as a table.
type tabular[T any] struct {
	header []string
	row    func(T) []string
}

// print writes items as a table or JSON; one says a single resource was
// asked for (JSON prints it as an object, not a list).
func (t tabular[T]) print(w io.Writer, format string, items []T, one bool) error {
	if err := checkFormat(format); err != nil {
		return err
	}
	if format == formatJSON {
		if one && len(items) == 1 {
			return writeJSON(w, items[0])
		}
		if items == nil {
			items = []T{}
		}
		return writeJSON(w, items)
	}
	rows := make([][]string, 0, len(items))
	for _, it := range items {
		rows = append(rows, t.row(it))
	}
	return writeTable(w, t.header, rows)
}

func sortedTags(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ",")
}

func shortDigest(d string) string {
	if i := strings.IndexByte(d, ':'); i >= 0 && len(d) > i+13 {
		return d[:i+13]
	}
	return d
}

var (
	subscriptionTable = tabular[cloud.Subscription]{
		[]string{"NAME", "DESCRIPTION", "CREATED"},
		func(s cloud.Subscription) []string { return []string{s.Name, s.Description, ts(s.CreatedAt)} },
	}
	accountTable = tabular[cloud.Account]{
		[]string{"NAME", "KIND", "SUBSCRIPTION", "DESCRIPTION", "CREATED"},
		func(a cloud.Account) []string {
			return []string{a.Name, string(a.Kind), a.Subscription, a.Description, ts(a.CreatedAt)}
		},
	}
	workspaceTable = tabular[cloud.Workspace]{
		[]string{"NAME", "ACCOUNT", "DESCRIPTION", "CREATED"},
		func(w cloud.Workspace) []string { return []string{w.Name, w.Account, w.Description, ts(w.CreatedAt)} },
	}
	projectTable = tabular[cloud.Project]{
		[]string{"NAME", "WORKSPACE", "FOLDER", "GIT REMOTE", "DESCRIPTION"},
		func(p cloud.Project) []string {
			return []string{p.Name, p.Workspace, p.Folder, p.GitRemote, p.Description}
		},
	}
	userTable = tabular[cloud.User]{
		[]string{"NAME", "EMAIL", "ADMIN", "CREATED"},
		func(u cloud.User) []string {
			return []string{u.Name, u.Email, strconv.FormatBool(u.Admin), ts(u.CreatedAt)}
		},
	}
	tokenTable = tabular[cloud.Token]{
		[]string{"ID", "NAME", "USER", "CREATED", "EXPIRES"},
		func(t cloud.Token) []string {
			exp := "never"
			if t.ExpiresAt != nil {
				exp = ts(*t.ExpiresAt)
			}
			return []string{t.ID, t.Name, t.User, ts(t.CreatedAt), exp}
		},
	}
	roleTable = tabular[cloud.RoleAssignment]{
		[]string{"SCOPE", "USER", "ROLE", "CREATED"},
		func(r cloud.RoleAssignment) []string {
			return []string{r.Scope, r.User, string(r.Role), ts(r.CreatedAt)}
		},
	}
	modelTable = tabular[cloud.Model]{
		[]string{"NAME", "VERSION", "FORMAT", "SIZE", "DIGEST", "TAGS", "CREATED"},
		func(m cloud.Model) []string {
			return []string{m.Name, strconv.Itoa(m.Version), m.Format, strconv.FormatInt(m.Size, 10),
				shortDigest(m.Digest), sortedTags(m.Tags), ts(m.CreatedAt)}
		},
	}
	manifestTable = tabular[cloud.Manifest]{
		[]string{"NAME", "VERSION", "RUNTIME", "MODELS", "DIGEST", "CREATED"},
		func(m cloud.Manifest) []string {
			var runtime string
			var models []string
			if m.Spec != nil {
				runtime = string(m.Spec.Runtime)
				for _, r := range m.Spec.Models {
					models = append(models, r.Name+":"+strconv.Itoa(r.Version))
				}
			}
			return []string{m.Name, strconv.Itoa(m.Version), runtime, strings.Join(models, ","),
				shortDigest(m.Digest), ts(m.CreatedAt)}
		},
	}
	operationTable = tabular[cloud.Operation]{
		[]string{"ID", "KIND", "STATUS", "DONE", "TARGET", "ERROR"},
		func(o cloud.Operation) []string {
			var msg string
			if o.Error != nil {
				msg = o.Error.Message
			}
			return []string{o.ID, o.Kind, string(o.Status), strconv.FormatBool(o.Done), o.Target, msg}
		},
	}
)

// listVersionsCmd makes "<kind> list [NAME]" for a versioned resource
// (models, manifests, images): every version, or NAME's only.
func listVersionsCmd[T any](a *app, kind string, table tabular[T],
	listAll func(c *client.Client, ctx context.Context, sub, acct, name string) ([]T, error)) *cobra.Command {
	list := &cobra.Command{
		Use:     "list [NAME]",
		Short:   fmt.Sprintf("List %s versions (of %s NAME only, if given)", kind, kind),
		Example: fmt.Sprintf("  mlfleet %s list\n  mlfleet %s list iris -o json", kind, kind),
		Args:    cobra.MaximumNArgs(1),
	}
	out := addOutput(list)
	list.RunE = a.run(func(cmd *cobra.Command, args []string) error {
		if err := checkFormat(*out); err != nil {
			return err
		}
		c, cfg, err := a.scope(needAcct)
		if err != nil {
			return err
		}
		name := ""
		if len(args) == 1 {
			name = args[0]
		}
		items, err := listAll(c, cmd.Context(), cfg.Subscription, cfg.Account, name)
		if err != nil {
			return fmt.Errorf("list %ss: %w", kind, err)
		}
		return table.print(a.env.Stdout, *out, items, false)
	})
	return list
}

// listAccountCmd makes a "list" command for a resource of the account in
// scope (environments, services).
func listAccountCmd[T any](a *app, short string, table tabular[T],
	listAll func(c *client.Client, ctx context.Context, sub, acct string) ([]T, error), example string) *cobra.Command {
	list := &cobra.Command{Use: "list", Short: short, Example: example, Args: cobra.NoArgs}
	out := addOutput(list)
	list.RunE = a.run(func(cmd *cobra.Command, _ []string) error {
		if err := checkFormat(*out); err != nil {
			return err
		}
		c, cfg, err := a.scope(needAcct)
		if err != nil {
			return err
		}
		items, err := listAll(c, cmd.Context(), cfg.Subscription, cfg.Account)
		if err != nil {
			return fmt.Errorf("%s: %w", strings.ToLower(short), err)
		}
		return table.print(a.env.Stdout, *out, items, false)
	})
	return list
}
