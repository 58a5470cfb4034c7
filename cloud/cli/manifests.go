package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/mlfleet/mlfleet/cloud"
	"github.com/mlfleet/mlfleet/cloud/client"
	"github.com/mlfleet/mlfleet/shared/errclass"
	"github.com/mlfleet/mlfleet/shared/manifest"
)

// manifestFlags are the convenience flags that build a manifest document.
type manifestFlags struct {
	file, name, runtime, schema, sample, desc string
	models                                    []string
}

// readManifestFile parses a manifest document from a local file (or stdin for "-").
func (a *app) readManifestFile(path string) (*manifest.Manifest, error) {
	var r io.Reader
	if path == "-" {
		r = a.env.Stdin
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, errclass.Wrap(errclass.InvalidArgument, err, "--file")
		}
		defer f.Close()
		r = f
	}
	m, err := manifest.Read(r)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", path, err)
	}
	return m, nil
}

// build makes a manifest from the convenience flags. Without --schema the
// schema is taken from the first model's declared inputs and outputs.
func (mf *manifestFlags) build(cmd *cobra.Command, c *client.Client, cfg Config) (*manifest.Manifest, error) {
	m := &manifest.Manifest{
		APIVersion: manifest.APIVersion, Name: mf.name, Description: mf.desc,
		Runtime: manifest.Runtime(mf.runtime),
	}
	for _, ref := range mf.models {
		name, v, err := parseRef(ref, true)
		if err != nil {
			return nil, err
		}
		m.Models = append(m.Models, manifest.ModelRef{Name: name, Version: v})
	}
	if mf.schema != "" {
		if err := readJSONFile("schema", mf.schema, &m.Schema); err != nil {
			return nil, err
		}
	} else {
		first := m.Models[0]
		mod, err := c.GetModel(cmd.Context(), cfg.Subscription, cfg.Account, first.Name, first.Version)
		if err != nil {
			return nil, fmt.Errorf("read schema of model %s:%d: %w", first.Name, first.Version, err)
		}
		if mod.IO == nil || len(mod.IO.Inputs) == 0 {
			return nil, errclass.Invalid("schema", "model %s:%d declares no inputs: pass --schema FILE", first.Name, first.Version)
		}
		m.Schema = manifest.Schema{Inputs: mod.IO.Inputs, Outputs: mod.IO.Outputs}
	}
	if mf.sample != "" {
		if err := readJSONFile("sample", mf.sample, &m.SampleData); err != nil {
			return nil, err
		}
	}
	// Check the document as the cloud will, so mistakes fail here with exit 2.
	b, err := json.Marshal(m)
	if err != nil {
		return nil, errclass.Wrap(errclass.InvalidArgument, err, "encode manifest")
	}
	parsed, err := manifest.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("manifest from flags: %w", err)
	}
	return parsed, nil
}

func (a *app) manifestCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "manifest",
		Aliases: []string{"manifests"},
		Short:   "Create, list, show and delete manifests (model + runtime + schema + sample data)",
		Example: `  mlfleet manifest create -f manifest.json
  mlfleet manifest create --name iris --model iris:1 --runtime onnx --sample sample.json
  mlfleet manifest list`,
	}
	groupCommand(cmd)
	a.scopeFlags(cmd, needAcct)

	var mf manifestFlags
	create := &cobra.Command{
		Use:   "create",
		Short: "Create the next version of a manifest from a file or from flags",
		Example: `  mlfleet manifest create -f manifest.json
  mlfleet manifest create --name iris --model iris:1 --runtime onnx --schema schema.json --sample sample.json -o json`,
		Args: cobra.NoArgs,
	}
	fl := create.Flags()
	fl.StringVarP(&mf.file, "file", "f", "", `manifest document (JSON; "-" for stdin)`)
	fl.StringVar(&mf.name, "name", "", "manifest name (without -f)")
	fl.StringArrayVar(&mf.models, "model", nil, "NAME:VERSION of a registered model (repeatable; without -f)")
	fl.StringVar(&mf.runtime, "runtime", string(manifest.RuntimeONNX), "runtime: onnx or exec (without -f)")
	fl.StringVar(&mf.schema, "schema", "", "JSON file of the input/output schema (default: the model's declared IO)")
	fl.StringVar(&mf.sample, "sample", "", "JSON file with an array of sample input rows")
	fl.StringVar(&mf.desc, "description", "", "free text describing the manifest (without -f)")
	cout := addOutput(create)
	create.RunE = a.run(func(cmd *cobra.Command, _ []string) error {
		if err := checkFormat(*cout); err != nil {
			return err
		}
		var m *manifest.Manifest
		var err error
		if mf.file != "" {
			for _, f := range []string{"name", "model", "runtime", "schema", "sample", "description"} {
				if cmd.Flags().Changed(f) {
					return usagef("--%s cannot be combined with -f: put it in the file", f)
				}
			}
			if m, err = a.readManifestFile(mf.file); err != nil {
				return err
			}
		} else if mf.name == "" || len(mf.models) == 0 {
			return usagef("pass -f FILE, or --name and at least one --model NAME:VERSION")
		}
		c, cfg, err := a.scope(needAcct)
		if err != nil {
			return err
		}
		if m == nil {
			if m, err = mf.build(cmd, c, cfg); err != nil {
				return err
			}
		}
		out, err := c.CreateManifest(cmd.Context(), cfg.Subscription, cfg.Account, m)
		if err != nil {
			return fmt.Errorf("create manifest %q: %w", m.Name, err)
		}
		return manifestTable.print(a.env.Stdout, *cout, []cloud.Manifest{*out}, true)
	})

	list := listVersionsCmd(a, "manifest", manifestTable, (*client.Client).ListAllManifests)

	show := showCmd(a, "manifest", &cobra.Command{
		Use:   "show NAME[:VERSION]",
		Short: "Show a manifest version (the newest if VERSION is left out), with its document",
		Example: `  mlfleet manifest show iris
  mlfleet manifest show iris:3 -o json`,
		Args: exactName("manifest"),
	}, byVersion("manifest", (*client.Client).GetManifest, (*client.Client).ListAllManifestVersions, func(m *cloud.Manifest) int { return m.Version }),
		func(w io.Writer, m *cloud.Manifest) error {
			if err := manifestTable.print(w, formatTable, []cloud.Manifest{*m}, true); err != nil {
				return err
			}
			fmt.Fprintln(w)
			return writeJSON(w, m.Spec)
		})

	del := deleteCmd(a, "manifest", &cobra.Command{
		Use:     "delete NAME:VERSION",
		Short:   "Delete a manifest version",
		Example: `  mlfleet manifest delete iris:1`,
		Args:    exactName("manifest"),
	}, removeByVersion((*client.Client).DeleteManifest))
	cmd.AddCommand(create, list, show, del)
	return cmd
}

func (a *app) operationCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "operation",
		Aliases: []string{"operations", "op"},
		Short:   "List and show long-running operations of a model management account",
		Example: `  mlfleet operation list
  mlfleet operation show op-7f3c -o json`,
	}
	groupCommand(cmd)
	a.scopeFlags(cmd, needAcct)

	list := &cobra.Command{Use: "list", Short: "List operations", Example: `  mlfleet operation list -s acme -a models`, Args: cobra.NoArgs}
	lout := addOutput(list)
	list.RunE = a.run(func(cmd *cobra.Command, _ []string) error {
		if err := checkFormat(*lout); err != nil {
			return err
		}
		c, cfg, err := a.scope(needAcct)
		if err != nil {
			return err
		}
		ops, err := c.ListAllOperations(cmd.Context(), cfg.Subscription, cfg.Account)
		if err != nil {
			return fmt.Errorf("list operations: %w", err)
		}
		return operationTable.print(a.env.Stdout, *lout, ops, false)
	})

	show := showCmd(a, "operation", &cobra.Command{
		Use: "show ID", Short: "Show an operation with its log", Example: `  mlfleet operation show op-7f3c`, Args: exactName("operation ID"),
	}, byName((*client.Client).GetOperation), func(w io.Writer, op *cloud.Operation) error {
		if err := operationTable.print(w, formatTable, []cloud.Operation{*op}, true); err != nil {
			return err
		}
		for _, l := range op.Log {
			fmt.Fprintln(w, "  "+l)
		}
		return nil
	})
	cmd.AddCommand(list, show)
	return cmd
}
