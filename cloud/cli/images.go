package cli

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mlfleet/mlfleet/cloud"
	"github.com/mlfleet/mlfleet/cloud/client"
	"github.com/mlfleet/mlfleet/shared/errclass"
)

// operationPoll is how often image create looks at its build operation.
const operationPoll = 500 * time.Millisecond

// parseVersionedRef parses NAME:VERSION given to flag; errors name the flag.
func parseVersionedRef(flag, s string) (string, int, error) {
	name, v, err := parseRef(s, true)
	if err != nil {
		return "", 0, errclass.Invalid(flag, "invalid --%s %q: want NAME:VERSION (e.g. iris:2)", flag, s)
	}
	return name, v, nil
}

var imageTable = tabular[cloud.Image]{
	[]string{"NAME", "VERSION", "TAG", "MANIFEST", "PLATFORMS", "DIGEST", "UPLOADED", "CREATED"},
	func(i cloud.Image) []string {
		return []string{i.Name, strconv.Itoa(i.Version), i.Tag, i.Manifest, strings.Join(i.Platforms, ","),
			shortDigest(i.Digest), strconv.FormatInt(i.BytesUploaded, 10), ts(i.CreatedAt)}
	},
}

// printImageDetails prints an image version and its layers.
func printImageDetails(w io.Writer, i *cloud.Image) error {
	rows := [][]string{
		{"Name:", i.Name}, {"Version:", strconv.Itoa(i.Version)}, {"Path:", i.Path}, {"Tag:", i.Tag},
		{"Manifest:", i.Manifest + " (" + shortDigest(i.ManifestDigest) + ")"}, {"Digest:", i.Digest},
		{"Reference:", i.Reference}, {"Platforms:", strings.Join(i.Platforms, ",")},
		{"Uploaded:", strconv.FormatInt(i.BytesUploaded, 10) + " bytes"},
		{"Created:", ts(i.CreatedAt) + " by " + cell(i.CreatedBy)},
	}
	if err := writeRows(w, rows); err != nil {
		return err
	}
	if len(i.Layers) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	layers := make([][]string, 0, len(i.Layers))
	for _, l := range i.Layers {
		layers = append(layers, []string{l.Platform, l.Kind, strconv.FormatInt(l.Size, 10), shortDigest(l.Digest)})
	}
	return writeTable(w, []string{"PLATFORM", "KIND", "SIZE", "DIGEST"}, layers)
}

// imageVersionOf reads the version from an image path ".../versions/N".
func imageVersionOf(path string) (int, error) {
	v, err := strconv.Atoi(path[strings.LastIndexByte(path, '/')+1:])
	if err != nil || v < 1 {
		return 0, fmt.Errorf("operation result %q is not an image version", path)
	}
	return v, nil
}

// followOperation polls an operation until it is done, writing each new
// log line to w as it appears.
func followOperation(ctx context.Context, c *client.Client, cfg Config, op *cloud.Operation, w io.Writer) (*cloud.Operation, error) {
	printed := 0
	t := time.NewTicker(operationPoll)
	defer t.Stop()
	for {
		for ; printed < len(op.Log); printed++ {
			fmt.Fprintln(w, op.Log[printed])
		}
		if op.Done {
			return op, nil
		}
		select {
		case <-ctx.Done():
			return op, fmt.Errorf("wait for operation %s: %w", op.ID, ctx.Err())
		case <-t.C:
		}
		next, err := c.GetOperation(ctx, cfg.Subscription, cfg.Account, op.ID)
		if err != nil {
			return op, fmt.Errorf("follow operation %s: %w", op.ID, err)
		}
		op = next
	}
}

func (a *app) imageCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "image",
		Aliases: []string{"images"},
		Short:   "Build, list, show and delete images (multi-arch OCI images built from manifests)",
		Example: `  mlfleet image create iris --manifest iris:1
  mlfleet image list
  mlfleet image show iris:2`,
	}
	groupCommand(cmd)
	a.scopeFlags(cmd, needAcct)

	var mref, tag, registry string
	var noWait bool
	create := &cobra.Command{
		Use:   "create NAME --manifest NAME:VERSION",
		Short: "Build the next version of an image from a manifest version, following the build log",
		Long: `Build the next version of image NAME from a manifest version. The cloud builds
and pushes one image per platform as a long operation; this command prints
each line of the build log as it appears (one per layer pushed or skipped)
on stderr, then the new image. With --no-wait it prints the queued operation
and returns (follow it with 'mlfleet operation show ID').

By default the image goes to the cloud's embedded registry; --registry NAME
pushes it to an external registry of the account instead (see 'mlfleet
registry create').`,
		Example: `  mlfleet image create iris --manifest iris:1
  mlfleet image create iris --manifest iris:2 --tag v2 -o json
  mlfleet image create iris --manifest iris:2 --no-wait
  mlfleet image create iris --manifest iris:2 --registry harbor`,
		Args: exactName("image"),
	}
	create.Flags().StringVar(&mref, "manifest", "", "manifest version to build, NAME:VERSION (required)")
	create.Flags().StringVar(&tag, "tag", "", "tag to give the image in the registry")
	create.Flags().BoolVar(&noWait, "no-wait", false, "return once the build is queued")
	create.Flags().StringVar(&registry, "registry", "", "external registry of the account to push to (default: the cloud's own)")
	cout := addOutput(create)
	create.RunE = a.run(func(cmd *cobra.Command, args []string) error {
		if err := checkFormat(*cout); err != nil {
			return err
		}
		if mref == "" {
			return usagef("image create needs --manifest NAME:VERSION")
		}
		if _, _, err := parseVersionedRef("manifest", mref); err != nil {
			return err
		}
		c, cfg, err := a.scope(needAcct)
		if err != nil {
			return err
		}
		op, err := c.CreateImage(cmd.Context(), cfg.Subscription, cfg.Account, cloud.CreateImage{Name: args[0], Manifest: mref, Tag: tag, Registry: registry})
		if err != nil {
			return fmt.Errorf("create image %q: %w", args[0], err)
		}
		if noWait {
			return operationTable.print(a.env.Stdout, *cout, []cloud.Operation{*op}, true)
		}
		dest := ""
		if registry != "" {
			dest = " for external registry " + registry
		}
		fmt.Fprintf(a.env.Stderr, "Building image %s from manifest %s%s (operation %s)...\n", args[0], mref, dest, op.ID)
		op, err = followOperation(cmd.Context(), c, cfg, op, a.env.Stderr)
		if err != nil {
			return err
		}
		if op.Status != cloud.OpSucceeded {
			msg := "no error reported"
			if op.Error != nil {
				msg = op.Error.Message
			}
			// A failed build is a failure (exit 1) whatever its class.
			return fmt.Errorf("build of image %s failed (operation %s): %s", args[0], op.ID, msg)
		}
		v, err := imageVersionOf(op.Result)
		if err != nil {
			return err
		}
		img, err := c.GetImage(cmd.Context(), cfg.Subscription, cfg.Account, args[0], v)
		if err != nil {
			return fmt.Errorf("read built image %s:%d: %w", args[0], v, err)
		}
		return imageTable.print(a.env.Stdout, *cout, []cloud.Image{*img}, true)
	})

	list := listVersionsCmd(a, "image", imageTable, (*client.Client).ListAllImages)

	show := showCmd(a, "image", &cobra.Command{
		Use:   "show NAME[:VERSION]",
		Short: "Show an image version (the newest if VERSION is left out) with its layers",
		Example: `  mlfleet image show iris
  mlfleet image show iris:2 -o json`,
		Args: exactName("image"),
	}, byVersion("image", (*client.Client).GetImage, (*client.Client).ListAllImageVersions, func(i *cloud.Image) int { return i.Version }),
		printImageDetails)

	del := deleteCmd(a, "image", &cobra.Command{
		Use:     "delete NAME:VERSION",
		Short:   "Delete an image version (refused while a service uses it)",
		Example: `  mlfleet image delete iris:1`,
		Args:    exactName("image"),
	}, removeByVersion((*client.Client).DeleteImage))
	cmd.AddCommand(create, list, show, del)
	return cmd
}
