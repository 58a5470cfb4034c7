package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/mlfleet/mlfleet/cloud"
	"github.com/mlfleet/mlfleet/cloud/client"
	"github.com/mlfleet/mlfleet/shared/errclass"
	"github.com/mlfleet/mlfleet/shared/manifest"
)

// parseRef splits "NAME[:VERSION]". version is 0 when absent; needVersion
// makes its absence an error.
func parseRef(s string, needVersion bool) (name string, version int, err error) {
	name, v, hasV := strings.Cut(s, ":")
	if name == "" {
		return "", 0, errclass.Invalid("name", "invalid reference %q: want NAME:VERSION", s)
	}
	if !hasV {
		if needVersion {
			return "", 0, errclass.Invalid("version", "reference %q has no version: want NAME:VERSION", s)
		}
		return name, 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || strconv.Itoa(n) != v {
		return "", 0, errclass.Invalid("version", "invalid version %q in %q: want a whole number >= 1", v, s)
	}
	return name, n, nil
}

// parseTags turns k=v flags into a map.
func parseTags(kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, errclass.Invalid("tag", "invalid --tag %q: want KEY=VALUE", kv)
		}
		if _, dup := m[k]; dup {
			return nil, errclass.Invalid("tag", "--tag key %q given twice", k)
		}
		m[k] = v
	}
	return m, nil
}

// progress returns a transfer progress reporter on stderr: a bar on a
// terminal, else a line at each quarter; and a function that ends it.
func (a *app) progress(what string, total int64) (client.Progress, func()) {
	if a.env.Terminal {
		bar := progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(a.env.Stderr),
			progressbar.OptionSetDescription(what),
			progressbar.OptionShowBytes(true),
			progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionClearOnFinish(),
		)
		return func(done, _ int64) { _ = bar.Set64(done) }, func() { _ = bar.Finish() }
	}
	next := int64(25)
	return func(done, total int64) {
		if total <= 0 {
			return
		}
		pct := done * 100 / total
		if pct < next {
			return
		}
		for next <= pct {
			next += 25
		}
		fmt.Fprintf(a.env.Stderr, "%s: %d%% (%d of %d bytes)\n", what, pct, done, total)
	}, func() {}
}

// latestModel resolves NAME[:VERSION] to a model version, the newest when
// no version is given.
func latestModel(cmd *cobra.Command, c *client.Client, cfg Config, ref string, needVersion bool) (*cloud.Model, error) {
	if _, _, err := parseRef(ref, needVersion); err != nil {
		return nil, err
	}
	read, err := byVersion("model", (*client.Client).GetModel, (*client.Client).ListAllModelVersions, modelVersion)(ref)
	if err != nil {
		return nil, err
	}
	return read(c, cmd.Context(), cfg.Subscription, cfg.Account)
}

func modelVersion(m *cloud.Model) int { return m.Version }

func (a *app) modelCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "model",
		Aliases: []string{"models"},
		Short:   "Register, list, download and delete models of a model management account",
		Example: `  mlfleet model register iris.onnx --name iris -s acme -a models
  mlfleet model list
  mlfleet model download iris:1 -o iris.onnx`,
	}
	groupCommand(cmd)
	a.scopeFlags(cmd, needAcct)

	var reg struct {
		name, format, desc, runID string
		tags                      []string
	}
	register := &cobra.Command{
		Use:   "register FILE",
		Short: "Upload FILE as the next version of a model",
		Example: `  mlfleet model register iris.onnx --name iris
  mlfleet model register model.bin --name churn --format file --tag team=ds --tag stage=dev --run-id run-42`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("model register needs exactly one argument, the model FILE (got %d)", len(args))
			}
			return nil
		},
	}
	register.Flags().StringVar(&reg.name, "name", "", "model name (required)")
	register.Flags().StringVar(&reg.format, "format", "", "onnx or file (default: detected by the cloud)")
	register.Flags().StringVar(&reg.desc, "description", "", "free text describing this version")
	register.Flags().StringArrayVar(&reg.tags, "tag", nil, "KEY=VALUE tag (repeatable)")
	register.Flags().StringVar(&reg.runID, "run-id", "", "the run that produced the model (lineage)")
	_ = register.MarkFlagRequired("name")
	rout := addOutput(register)
	register.RunE = a.run(func(cmd *cobra.Command, args []string) error {
		if err := checkFormat(*rout); err != nil {
			return err
		}
		tags, err := parseTags(reg.tags)
		if err != nil {
			return err
		}
		f, err := os.Open(args[0])
		if err != nil {
			return errclass.Wrap(errclass.InvalidArgument, err, "model file")
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return errclass.Wrap(errclass.InvalidArgument, err, "model file")
		}
		if !fi.Mode().IsRegular() {
			return errclass.Invalid("file", "model file %q is not a regular file", args[0])
		}
		c, cfg, err := a.scope(needAcct)
		if err != nil {
			return err
		}
		report, done := a.progress("upload "+filepath.Base(args[0]), fi.Size())
		m, err := c.RegisterModel(cmd.Context(), cfg.Subscription, cfg.Account, reg.name, client.ModelUpload{
			Body: f, Size: fi.Size(), Format: reg.format, Description: reg.desc, Tags: tags, RunID: reg.runID,
			Progress: report,
		})
		done()
		if err != nil {
			return fmt.Errorf("register model %q from %s: %w", reg.name, args[0], err)
		}
		return modelTable.print(a.env.Stdout, *rout, []cloud.Model{*m}, true)
	})

	list := listVersionsCmd(a, "model", modelTable, (*client.Client).ListAllModels)

	show := showCmd(a, "model", &cobra.Command{
		Use:   "show NAME[:VERSION]",
		Short: "Show a model version (the newest if VERSION is left out)",
		Example: `  mlfleet model show iris
  mlfleet model show iris:2 -o json`,
		Args: exactName("model"),
	}, byVersion("model", (*client.Client).GetModel, (*client.Client).ListAllModelVersions, modelVersion), printModelDetails)

	var outFile string
	download := &cobra.Command{
		Use:   "download NAME[:VERSION]",
		Short: "Download a model version's file (the newest if VERSION is left out)",
		Example: `  mlfleet model download iris:2 -o iris.onnx
  mlfleet model download iris:2 -o - | sha256sum`,
		Args: exactName("model"),
	}
	download.Flags().StringVarP(&outFile, "output", "o", "", `file to write ("-": stdout; default NAME-VERSION with the format's extension)`)
	download.RunE = a.run(func(cmd *cobra.Command, args []string) error {
		if _, _, err := parseRef(args[0], false); err != nil {
			return err
		}
		c, cfg, err := a.scope(needAcct)
		if err != nil {
			return err
		}
		m, err := latestModel(cmd, c, cfg, args[0], false)
		if err != nil {
			return fmt.Errorf("download model %q: %w", args[0], err)
		}
		return a.download(cmd, c, cfg, m, outFile)
	})

	var upd struct {
		desc string
		tags []string
	}
	update := &cobra.Command{
		Use:   "update NAME:VERSION",
		Short: "Change a model version's description or tags (--tag replaces all tags)",
		Example: `  mlfleet model update iris:2 --description "retrained on May data"
  mlfleet model update iris:2 --tag stage=prod --tag team=ds`,
		Args: exactName("model"),
	}
	update.Flags().StringVar(&upd.desc, "description", "", "new description")
	update.Flags().StringArrayVar(&upd.tags, "tag", nil, "KEY=VALUE tag (repeatable; replaces all tags)")
	uout := addOutput(update)
	update.RunE = a.run(func(cmd *cobra.Command, args []string) error {
		if err := checkFormat(*uout); err != nil {
			return err
		}
		name, v, err := parseRef(args[0], true)
		if err != nil {
			return err
		}
		var in client.ModelUpdate
		if cmd.Flags().Changed("description") {
			in.Description = &upd.desc
		}
		if cmd.Flags().Changed("tag") {
			tags, err := parseTags(upd.tags)
			if err != nil {
				return err
			}
			in.Tags = &tags
		}
		if in.Description == nil && in.Tags == nil {
			return usagef("nothing to update: pass --description or --tag")
		}
		c, cfg, err := a.scope(needAcct)
		if err != nil {
			return err
		}
		m, err := c.UpdateModel(cmd.Context(), cfg.Subscription, cfg.Account, name, v, in)
		if err != nil {
			return fmt.Errorf("update model %q: %w", args[0], err)
		}
		return modelTable.print(a.env.Stdout, *uout, []cloud.Model{*m}, true)
	})

	del := deleteCmd(a, "model", &cobra.Command{
		Use:     "delete NAME:VERSION",
		Short:   "Delete a model version (refused while a manifest uses it)",
		Example: `  mlfleet model delete iris:1`,
		Args:    exactName("model"),
	}, removeByVersion((*client.Client).DeleteModel))
	cmd.AddCommand(register, list, show, download, update, del)
	return cmd
}

// download writes m's file to outFile ("-" for stdout), through a temporary
// file so that a failed download leaves nothing behind.
func (a *app) download(cmd *cobra.Command, c *client.Client, cfg Config, m *cloud.Model, outFile string) error {
	if outFile == "-" {
		_, err := c.DownloadModel(cmd.Context(), cfg.Subscription, cfg.Account, m.Name, m.Version, a.env.Stdout, nil)
		if err != nil {
			return fmt.Errorf("download model %s:%d: %w", m.Name, m.Version, err)
		}
		return nil
	}
	if outFile == "" {
		outFile = fmt.Sprintf("%s-%d", m.Name, m.Version)
		if m.Format == "onnx" {
			outFile += ".onnx"
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(outFile), "."+filepath.Base(outFile)+".*.part")
	if err != nil {
		return errclass.Wrap(errclass.InvalidArgument, err, "--output %q", outFile)
	}
	defer os.Remove(tmp.Name())
	report, done := a.progress("download "+m.Name+":"+strconv.Itoa(m.Version), m.Size)
	d, err := c.DownloadModel(cmd.Context(), cfg.Subscription, cfg.Account, m.Name, m.Version, tmp, report)
	done()
	if err != nil {
		tmp.Close()
		return fmt.Errorf("download model %s:%d: %w", m.Name, m.Version, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", outFile, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", outFile, err)
	}
	if err := os.Rename(tmp.Name(), outFile); err != nil {
		return fmt.Errorf("write %s: %w", outFile, err)
	}
	fmt.Fprintf(a.env.Stderr, "Downloaded %s:%d to %s (%d bytes, %s).\n", m.Name, m.Version, outFile, d.Size, d.Digest)
	return nil
}

func printModelDetails(w io.Writer, m *cloud.Model) error {
	rows := [][]string{
		{"Name:", m.Name}, {"Version:", strconv.Itoa(m.Version)}, {"Path:", m.Path},
		{"Format:", m.Format}, {"Size:", strconv.FormatInt(m.Size, 10)}, {"Digest:", m.Digest},
		{"Description:", m.Description}, {"Tags:", sortedTags(m.Tags)}, {"Run:", m.RunID},
		{"Created:", ts(m.CreatedAt) + " by " + cell(m.CreatedBy)},
	}
	if m.IO != nil {
		for _, f := range m.IO.Inputs {
			rows = append(rows, []string{"Input:", fieldString(f)})
		}
		for _, f := range m.IO.Outputs {
			rows = append(rows, []string{"Output:", fieldString(f)})
		}
	}
	return writeRows(w, rows)
}

func fieldString(f manifest.Field) string {
	s := f.Name + " " + string(f.Type)
	if len(f.Shape) > 0 {
		dims := make([]string, len(f.Shape))
		for i, d := range f.Shape {
			dims[i] = strconv.Itoa(d)
		}
		s += " [" + strings.Join(dims, ",") + "]"
	}
	return s
}

// writeRows prints label/value rows without a header.
func writeRows(w io.Writer, rows [][]string) error {
	var b strings.Builder
	width := 0
	for _, r := range rows {
		width = max(width, len(r[0]))
	}
	for _, r := range rows {
		fmt.Fprintf(&b, "%-*s %s\n", width, r[0], cell(r[1]))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// readJSONFile decodes a local JSON file strictly into v; failures are
// invalid input naming the flag.
func readJSONFile(flag, path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return errclass.Wrap(errclass.InvalidArgument, err, "--%s", flag)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return &errclass.Error{Class: errclass.InvalidArgument, Field: flag, Msg: "--" + flag + " " + path, Err: err}
	}
	return nil
}
