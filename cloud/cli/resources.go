package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/mlfleet/mlfleet/cloud/client"
	"github.com/mlfleet/mlfleet/shared/errclass"
)

// The show and delete commands of an account's resources share one shape:
// parse the argument (bad ones fail before the cloud is reached), reach the
// cloud, act, print. showCmd and deleteCmd build them from the parts that
// differ.

// reader fetches the resource an argument named.
type reader[T any] func(c *client.Client, ctx context.Context, sub, acct string) (*T, error)

// remover deletes the resource an argument named and says how to call it.
type remover func(c *client.Client, ctx context.Context, sub, acct string) (string, error)

// showCmd completes cmd (its Use, Short, Example and Args set) as the show
// command of kind: the resource as the API answers it with -o json, else
// printed by details.
func showCmd[T any](a *app, kind string, cmd *cobra.Command, parse func(arg string) (reader[T], error), details func(io.Writer, *T) error) *cobra.Command {
	out := addOutput(cmd)
	cmd.RunE = a.run(func(cc *cobra.Command, args []string) error {
		if err := checkFormat(*out); err != nil {
			return err
		}
		read, err := parse(args[0])
		if err != nil {
			return err
		}
		c, cfg, err := a.scope(needAcct)
		if err != nil {
			return err
		}
		v, err := read(c, cc.Context(), cfg.Subscription, cfg.Account)
		if err != nil {
			return fmt.Errorf("show %s %q: %w", kind, args[0], err)
		}
		if *out == formatJSON {
			return writeJSON(a.env.Stdout, v)
		}
		return details(a.env.Stdout, v)
	})
	return cmd
}

// deleteCmd completes cmd as the delete command of kind.
func deleteCmd(a *app, kind string, cmd *cobra.Command, parse func(arg string) (remover, error)) *cobra.Command {
	cmd.RunE = a.run(func(cc *cobra.Command, args []string) error {
		del, err := parse(args[0])
		if err != nil {
			return err
		}
		c, cfg, err := a.scope(needAcct)
		if err != nil {
			return err
		}
		what, err := del(c, cc.Context(), cfg.Subscription, cfg.Account)
		if err != nil {
			return fmt.Errorf("delete %s %q: %w", kind, args[0], err)
		}
		fmt.Fprintf(a.env.Stdout, "Deleted %s %s.\n", kind, what)
		return nil
	})
	return cmd
}

// byName reads the resource the argument names.
func byName[T any](get func(*client.Client, context.Context, string, string, string) (*T, error)) func(string) (reader[T], error) {
	return func(name string) (reader[T], error) {
		return func(c *client.Client, ctx context.Context, sub, acct string) (*T, error) {
			return get(c, ctx, sub, acct, name)
		}, nil
	}
}

// byVersion reads NAME:VERSION, or the newest version of NAME.
func byVersion[T any](kind string, get func(*client.Client, context.Context, string, string, string, int) (*T, error),
	all func(*client.Client, context.Context, string, string, string) ([]T, error), version func(*T) int) func(string) (reader[T], error) {
	return func(ref string) (reader[T], error) {
		name, v, err := parseRef(ref, false)
		if err != nil {
			return nil, err
		}
		return func(c *client.Client, ctx context.Context, sub, acct string) (*T, error) {
			if v > 0 {
				return get(c, ctx, sub, acct, name, v)
			}
			list, err := all(c, ctx, sub, acct, name)
			if err != nil {
				return nil, err
			}
			if newest := newestOf(list, version); newest != nil {
				return newest, nil
			}
			return nil, errclass.NotFoundf("%s %q has no versions", kind, name)
		}, nil
	}
}

// newestOf returns the element of list with the highest version, or nil.
func newestOf[T any](list []T, version func(*T) int) *T {
	var best *T
	for i := range list {
		if best == nil || version(&list[i]) > version(best) {
			best = &list[i]
		}
	}
	return best
}

// removeByName deletes the resource the argument names.
func removeByName(del func(*client.Client, context.Context, string, string, string) error) func(string) (remover, error) {
	return func(name string) (remover, error) {
		return func(c *client.Client, ctx context.Context, sub, acct string) (string, error) {
			return name, del(c, ctx, sub, acct, name)
		}, nil
	}
}

// removeByVersion deletes NAME:VERSION (the version is required).
func removeByVersion(del func(*client.Client, context.Context, string, string, string, int) error) func(string) (remover, error) {
	return func(ref string) (remover, error) {
		name, v, err := parseRef(ref, true)
		if err != nil {
			return nil, err
		}
		return func(c *client.Client, ctx context.Context, sub, acct string) (string, error) {
			return fmt.Sprintf("%s:%d", name, v), del(c, ctx, sub, acct, name, v)
		}, nil
	}
}
