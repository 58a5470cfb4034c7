package cloud

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"strings"

	"github.com/mlfleet/mlfleet/cloud/modelfile"
	"github.com/mlfleet/mlfleet/shared/errclass"
	"github.com/mlfleet/mlfleet/shared/manifest"
)

// RegisterModel is a model upload.
type RegisterModel struct {
	Subscription, Account, Name string
	// Format is "onnx", "file", or "" to detect.
	Format      string
	Description string
	Tags        map[string]string
	RunID       string
	// Body streams the file; it is never held in memory whole.
	Body io.Reader
}

var (
	tagKeyRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$`)
	runIDRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
)

func checkTags(tags map[string]string) error {
	if len(tags) > 64 {
		return errclass.Invalid("tags", "%d tags; the limit is 64", len(tags))
	}
	for k, v := range tags {
		if !tagKeyRE.MatchString(k) {
			return errclass.Invalid("tags", "tag key %q must be 1-63 letters, digits, '.', '_', '/', '-'", k)
		}
		if len(v) > 256 {
			return errclass.Invalid("tags."+k, "tag %q value is longer than 256 characters", k)
		}
	}
	return nil
}

// RegisterModel stores a new version of a model. The file is streamed to a
// blob, checked (an ONNX file must parse as an ONNX model), and only then
// recorded, under the next version of its name.
func (s *Service) RegisterModel(ctx context.Context, in RegisterModel) (*Model, error) {
	acctPath := AccountPath(in.Subscription, in.Account)
	if _, err := authorize(ctx, acctPath, Contributor); err != nil {
		return nil, err
	}
	if err := manifest.CheckName("name", in.Name); err != nil {
		return nil, err
	}
	switch in.Format {
	case "", modelfile.ONNX, modelfile.File:
	default:
		return nil, errclass.Invalid("format", "format %q is not %q or %q", in.Format, modelfile.ONNX, modelfile.File)
	}
	if err := checkDescription(in.Description); err != nil {
		return nil, err
	}
	if err := checkTags(in.Tags); err != nil {
		return nil, err
	}
	if in.RunID != "" && !runIDRE.MatchString(in.RunID) {
		return nil, errclass.Invalid("runId", "run id %q is not valid", in.RunID)
	}
	// Fail early, before reading the upload, if the account is wrong.
	if err := s.store.View(ctx, func(tx Tx) error {
		_, err := account(tx, in.Subscription, in.Account, ModelManagement)
		return err
	}); err != nil {
		return nil, err
	}

	format := in.Format
	var info *modelfile.Info
	check := func(path string) error {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return err
		}
		if st.Size() == 0 {
			return errclass.Invalid("file", "the model file is empty")
		}
		if format == modelfile.File {
			return nil
		}
		info, err = modelfile.InspectONNX(f)
		switch {
		case err == nil:
			format = modelfile.ONNX
		case format == modelfile.ONNX:
			return errclass.Wrap(errclass.InvalidArgument, err, "the file is declared format onnx but is not an ONNX model")
		default:
			format = modelfile.File
		}
		return nil
	}
	digest, size, err := s.blobs.Write(ctx, in.Body, s.cfg.MaxModelBytes, check)
	if err != nil {
		return nil, fmt.Errorf("model upload: %w", err)
	}

	m := Model{Subscription: in.Subscription, Account: in.Account, Name: in.Name, Digest: digest, Size: size,
		Format: format, Description: in.Description, Tags: in.Tags, RunID: in.RunID}
	if info != nil {
		m.IO = &ModelIO{Inputs: info.Inputs, Outputs: info.Outputs, Opsets: info.Opsets}
	}
	s.blobMu.Lock()
	defer s.blobMu.Unlock()
	err = s.store.Update(ctx, func(tx Tx) error {
		if _, err := account(tx, in.Subscription, in.Account, ModelManagement); err != nil {
			return err
		}
		// The blob may have been collected by a concurrent delete of its last
		// model between the write and this lock.
		if f, err := s.blobs.Open(digest); err != nil {
			return errclass.Wrap(errclass.Unavailable, err, "model upload raced a delete; retry")
		} else {
			f.Close()
		}
		v, err := tx.NextSeq(ModelVersionsPath(in.Subscription, in.Account, in.Name))
		if err != nil {
			return err
		}
		m.Version = int(v)
		m.Meta = s.meta(ctx, ModelPath(in.Subscription, in.Account, in.Name, m.Version))
		if err := tx.Create(m.Path, &m); err != nil {
			return err
		}
		return tx.AddRef(blobRef(digest), m.Path)
	})
	if err != nil {
		s.collectBlobsLocked(ctx, digest)
		return nil, err
	}
	return &m, nil
}

// ListModels lists every model version of an account, optionally of one name.
func (s *Service) ListModels(ctx context.Context, sub, acct, name string, o ListOptions) (Page[Model], error) {
	return listVersions[Model](ctx, s, sub, acct, "models", name, o)
}

// GetModel reads one model version.
func (s *Service) GetModel(ctx context.Context, sub, acct, name string, v int) (*Model, error) {
	return get[Model](ctx, s, ModelPath(sub, acct, name, v), Reader)
}

// UpdateModel changes a model version's description and tags.
func (s *Service) UpdateModel(ctx context.Context, sub, acct, name string, v int, p Patch) (*Model, error) {
	if err := p.only("description", "tags"); err != nil {
		return nil, err
	}
	if err := checkTags(p.Tags); err != nil {
		return nil, err
	}
	return update(ctx, s, ModelPath(sub, acct, name, v), func(m *Model, _ *Meta) error {
		if p.Tags != nil {
			m.Tags = p.Tags
		}
		return applyDescription(&m.Description, p)
	}, func(m *Model) *Meta { return &m.Meta })
}

// DeleteModel deletes a model version; refused while a manifest uses it.
func (s *Service) DeleteModel(ctx context.Context, sub, acct, name string, v int) error {
	path := ModelPath(sub, acct, name, v)
	if _, err := authorize(ctx, path, Contributor); err != nil {
		return err
	}
	var m Model
	err := s.store.Update(ctx, func(tx Tx) error {
		if err := tx.Get(path, &m); err != nil {
			return err
		}
		users, err := tx.Referrers(path, 3)
		if err != nil {
			return err
		}
		if len(users) > 0 {
			return errclass.Conflictf("model %s version %d is used by %s; delete those first", name, v, strings.Join(users, ", "))
		}
		return tx.Delete(path)
	})
	if err != nil {
		return err
	}
	s.collectBlobs(ctx, m.Digest)
	return nil
}

// OpenModel opens a model version's file for download.
func (s *Service) OpenModel(ctx context.Context, sub, acct, name string, v int) (*Model, io.ReadSeekCloser, error) {
	m, err := s.GetModel(ctx, sub, acct, name, v)
	if err != nil {
		return nil, nil, err
	}
	f, err := s.blobs.Open(m.Digest)
	if err != nil {
		return nil, nil, fmt.Errorf("model %s version %d: %w", name, v, err)
	}
	return m, f, nil
}

// modelBlobsUnder lists the blobs of models stored below path.
func modelBlobsUnder(tx Tx, path string) ([]string, error) {
	var out []string
	var collections []string
	switch n := strings.Count(path, "/"); {
	case n == 2: // subscription: every account's models
		_, err := tx.List(path+"/accounts", 1, "", 0, func(raw []byte) error {
			var a Account
			if err := json.Unmarshal(raw, &a); err != nil {
				return err
			}
			collections = append(collections, a.Path+"/models")
			return nil
		})
		if err != nil {
			return nil, err
		}
	case n == 4 && strings.Contains(path, "/accounts/"):
		collections = append(collections, path+"/models")
	}
	for _, c := range collections {
		_, err := tx.List(c, 3, "", 0, func(raw []byte) error {
			var m Model
			if err := json.Unmarshal(raw, &m); err != nil {
				return err
			}
			out = append(out, m.Digest)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// collectBlobs deletes the blobs no model refers to any more.
func (s *Service) collectBlobs(ctx context.Context, digests ...string) {
	s.blobMu.Lock()
	defer s.blobMu.Unlock()
	s.collectBlobsLocked(ctx, digests...)
}

func (s *Service) collectBlobsLocked(ctx context.Context, digests ...string) {
	for _, d := range digests {
		var users []string
		err := s.store.View(context.WithoutCancel(ctx), func(tx Tx) error {
			var err error
			users, err = tx.Referrers(blobRef(d), 1)
			return err
		})
		if err != nil || len(users) > 0 {
			continue
		}
		if err := s.blobs.Delete(d); err != nil {
			slog.Warn("delete unreferenced blob", "digest", d, "err", err)
		}
	}
}

// --- manifests ---

// CreateManifest stores the next version of a manifest. The document is
// parsed strictly; its model references must name registered versions in the
// same account, whose digests are recorded. An ONNX manifest without input
// schema gets one inferred from its first model's declared inputs.
func (s *Service) CreateManifest(ctx context.Context, sub, acct string, doc []byte) (*Manifest, error) {
	if _, err := authorize(ctx, AccountPath(sub, acct), Contributor); err != nil {
		return nil, err
	}
	var out Manifest
	err := s.store.Update(ctx, func(tx Tx) error {
		if _, err := account(tx, sub, acct, ModelManagement); err != nil {
			return err
		}
		spec, models, err := resolveManifest(tx, sub, acct, doc)
		if err != nil {
			return err
		}
		digest, err := spec.Digest()
		if err != nil {
			return err
		}
		v, err := tx.NextSeq(ManifestVersionsPath(sub, acct, spec.Name))
		if err != nil {
			return err
		}
		out = Manifest{Meta: s.meta(ctx, ManifestPath(sub, acct, spec.Name, int(v))), Subscription: sub, Account: acct,
			Name: spec.Name, Version: int(v), Digest: digest, Spec: spec}
		if err := tx.Create(out.Path, &out); err != nil {
			return err
		}
		for _, m := range models {
			if err := tx.AddRef(m.Path, out.Path); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// resolveManifest parses doc, checks its models against the registry, fills
// their digests and, for ONNX models, an absent schema.
func resolveManifest(tx Tx, sub, acct string, doc []byte) (*manifest.Manifest, []Model, error) {
	var peek struct {
		Runtime manifest.Runtime `json:"runtime"`
		Models  []struct {
			Name    string `json:"name"`
			Version int    `json:"version"`
		} `json:"models"`
		Schema json.RawMessage `json:"schema"`
	}
	// A loose first look, to find the models; Parse below is the strict check.
	if err := json.Unmarshal(doc, &peek); err != nil {
		_, perr := manifest.Parse(doc)
		if perr != nil {
			return nil, nil, perr
		}
		return nil, nil, errclass.Wrap(errclass.InvalidArgument, err, "manifest is not valid JSON")
	}
	var models []Model
	for i, r := range peek.Models {
		if !manifest.ValidName(r.Name) || r.Version < 1 {
			continue // Parse names the problem
		}
		var m Model
		if err := tx.Get(ModelPath(sub, acct, r.Name, r.Version), &m); err != nil {
			if errclass.Is(err, errclass.NotFound) {
				return nil, nil, errclass.Invalid(fmt.Sprintf("models[%d]", i), "model %q version %d is not registered in account %q", r.Name, r.Version, acct)
			}
			return nil, nil, err
		}
		if peek.Runtime == manifest.RuntimeONNX && m.Format != modelfile.ONNX {
			return nil, nil, errclass.Invalid(fmt.Sprintf("models[%d]", i), "model %q version %d is format %q; runtime onnx needs onnx models", r.Name, r.Version, m.Format)
		}
		models = append(models, m)
	}
	if peek.Runtime == manifest.RuntimeONNX && len(models) > 0 && models[0].IO != nil && schemaEmpty(peek.Schema) {
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(doc, &raw); err == nil {
			inferred, _ := json.Marshal(manifest.Schema{Inputs: models[0].IO.Inputs, Outputs: models[0].IO.Outputs})
			raw["schema"] = inferred
			doc, _ = json.Marshal(raw)
		}
	}
	spec, err := manifest.Parse(doc)
	if err != nil {
		return nil, nil, err
	}
	if len(models) != len(spec.Models) {
		return nil, nil, fmt.Errorf("manifest models resolved %d of %d", len(models), len(spec.Models))
	}
	for i := range spec.Models {
		if d := spec.Models[i].Digest; d != "" && d != models[i].Digest {
			return nil, nil, errclass.Invalid(fmt.Sprintf("models[%d].digest", i), "digest %s does not match model %q version %d (%s)", d, models[i].Name, models[i].Version, models[i].Digest)
		}
		spec.Models[i].Digest = models[i].Digest
	}
	return spec, models, nil
}

func schemaEmpty(raw json.RawMessage) bool {
	if len(raw) == 0 || string(raw) == "null" {
		return true
	}
	var s struct {
		Inputs []json.RawMessage `json:"inputs"`
	}
	return json.Unmarshal(raw, &s) == nil && len(s.Inputs) == 0
}

// ListManifests lists manifest versions of an account, optionally of one name.
func (s *Service) ListManifests(ctx context.Context, sub, acct, name string, o ListOptions) (Page[Manifest], error) {
	return listVersions[Manifest](ctx, s, sub, acct, "manifests", name, o)
}

// GetManifest reads one manifest version.
func (s *Service) GetManifest(ctx context.Context, sub, acct, name string, v int) (*Manifest, error) {
	return get[Manifest](ctx, s, ManifestPath(sub, acct, name, v), Reader)
}

// DeleteManifest deletes a manifest version (and its references to models);
// refused while an image was built from it.
func (s *Service) DeleteManifest(ctx context.Context, sub, acct, name string, v int) error {
	return s.deleteUnused(ctx, ManifestPath(sub, acct, name, v), fmt.Sprintf("manifest %s version %d", name, v))
}
