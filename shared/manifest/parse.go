package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/mlfleet/mlfleet/shared/errclass"
)

// maxDepth bounds the nesting of JSON arrays and objects.
const maxDepth = 64

// Parse decodes and validates a manifest from untrusted JSON. It rejects
// documents over MaxSize (errclass.TooLarge), invalid UTF-8, syntax errors,
// trailing data, unknown or duplicate keys (keys match case-sensitively),
// values of the wrong JSON type, null where a value is required, and any
// manifest Validate rejects; all of these are errclass.InvalidArgument with
// the field's JSON path. Defaults are not applied (see ApplyDefaults); numbers
// in SampleData are json.Number in canonical form.
func Parse(b []byte) (*Manifest, error) {
	if len(b) > MaxSize {
		return nil, errclass.New(errclass.TooLarge, "", "manifest is %d bytes, more than the limit of %d", len(b), MaxSize)
	}
	if !utf8.Valid(b) {
		return nil, finish(invalid("", "manifest is not valid UTF-8"))
	}
	if e := checkStrict(b, reflect.TypeFor[Manifest]()); e != nil {
		return nil, finish(e)
	}
	m := new(Manifest)
	if err := decode(b, m); err != nil {
		// checkStrict accepted the document, so this is a bug here.
		return nil, errclass.Wrap(errclass.InvalidArgument, err, "manifest: decode")
	}
	if e := normalize(m); e != nil {
		return nil, finish(e)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// Read reads at most MaxSize bytes from r and parses them with Parse.
func Read(r io.Reader) (*Manifest, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("manifest: read: %w", err)
	}
	return Parse(b)
}

// decode is plain encoding/json decoding with numbers kept as json.Number.
func decode(b []byte, m *Manifest) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	return dec.Decode(m)
}

// checkStrict walks the JSON in b against the shape of type t.
func checkStrict(b []byte, t reflect.Type) *errclass.Error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	s := &strict{dec: dec}
	tok, e := s.token("")
	if e != nil {
		return e
	}
	if e := s.value(t, "", tok, 0); e != nil {
		return e
	}
	if _, err := dec.Token(); err != io.EOF {
		return invalid("", "trailing data after the manifest at byte %d", dec.InputOffset())
	}
	return nil
}

type strict struct{ dec *json.Decoder }

func (s *strict) token(path string) (json.Token, *errclass.Error) {
	tok, err := s.dec.Token()
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, invalid(path, "invalid JSON at byte %d: %v", se.Offset, se)
		}
		return nil, invalid(path, "invalid JSON at byte %d: %v", s.dec.InputOffset(), err)
	}
	return tok, nil
}

// value checks the JSON value starting with tok against t.
func (s *strict) value(t reflect.Type, path string, tok json.Token, depth int) *errclass.Error {
	if depth > maxDepth {
		return invalid(path, "nested deeper than %d levels", maxDepth)
	}
	if tok == nil {
		switch t.Kind() {
		case reflect.Pointer, reflect.Slice, reflect.Map, reflect.Interface:
			return nil
		}
		return invalid(path, "must not be null")
	}
	switch t.Kind() {
	case reflect.Pointer:
		return s.value(t.Elem(), path, tok, depth)
	case reflect.Interface:
		return s.anyValue(path, tok, depth)
	case reflect.Struct:
		fields := jsonFields(t)
		return s.object(path, tok, depth, func(key, p string) (reflect.Type, *errclass.Error) {
			ft, ok := fields[key]
			if !ok {
				return nil, invalid(p, "unknown field %q", key)
			}
			return ft, nil
		})
	case reflect.Map:
		return s.object(path, tok, depth, func(string, string) (reflect.Type, *errclass.Error) {
			return t.Elem(), nil
		})
	case reflect.Slice:
		if d, ok := tok.(json.Delim); !ok || d != '[' {
			return invalid(path, "must be an array, not %s", describe(tok))
		}
		for i := 0; s.dec.More(); i++ {
			p := fmt.Sprintf("%s[%d]", path, i)
			tok, e := s.token(p)
			if e != nil {
				return e
			}
			if e := s.value(t.Elem(), p, tok, depth+1); e != nil {
				return e
			}
		}
		_, e := s.token(path) // ']'
		return e
	case reflect.String:
		if _, ok := tok.(string); !ok {
			return invalid(path, "must be a string, not %s", describe(tok))
		}
		return nil
	case reflect.Bool:
		if _, ok := tok.(bool); !ok {
			return invalid(path, "must be true or false, not %s", describe(tok))
		}
		return nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := tok.(json.Number)
		if !ok {
			return invalid(path, "must be an integer, not %s", describe(tok))
		}
		if _, err := strconv.ParseInt(string(n), 10, t.Bits()); err != nil {
			return invalid(path, "must be an integer of at most %d bits, not %s", t.Bits(), n)
		}
		return nil
	case reflect.Float64:
		n, ok := tok.(json.Number)
		if !ok {
			return invalid(path, "must be a number, not %s", describe(tok))
		}
		if _, err := strconv.ParseFloat(string(n), 64); err != nil {
			return invalid(path, "number %s is out of range", n)
		}
		return nil
	}
	return invalid(path, "cannot check Go type %v", t) // a bug in this package
}

// object checks a JSON object; field gives the type of each key's value.
func (s *strict) object(path string, tok json.Token, depth int, field func(key, path string) (reflect.Type, *errclass.Error)) *errclass.Error {
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return invalid(path, "must be an object, not %s", describe(tok))
	}
	seen := map[string]bool{}
	for s.dec.More() {
		kt, e := s.token(path)
		if e != nil {
			return e
		}
		key := kt.(string) // the decoder guarantees object keys are strings
		p := joinPath(path, keyPath(key))
		if seen[key] {
			return invalid(p, "duplicate key %q", key)
		}
		seen[key] = true
		ft, e := field(key, p)
		if e != nil {
			return e
		}
		vt, e := s.token(p)
		if e != nil {
			return e
		}
		if e := s.value(ft, p, vt, depth+1); e != nil {
			return e
		}
	}
	_, e := s.token(path) // '}'
	return e
}

var anyType = reflect.TypeFor[any]()

// anyValue checks a JSON value of any type: only duplicate keys and depth.
func (s *strict) anyValue(path string, tok json.Token, depth int) *errclass.Error {
	d, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	if d == '{' {
		return s.object(path, tok, depth, func(string, string) (reflect.Type, *errclass.Error) { return anyType, nil })
	}
	return s.value(reflect.TypeFor[[]any](), path, tok, depth)
}

// jsonFields maps the JSON names of t's fields to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	m := make(map[string]reflect.Type, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		m[name] = f.Type
	}
	return m
}

func describe(tok json.Token) string {
	switch v := tok.(type) {
	case nil:
		return "null"
	case bool:
		return strconv.FormatBool(v)
	case json.Number:
		return "number " + string(v)
	case string:
		if len(v) > 40 {
			v = v[:40] + "..."
		}
		return "string " + quote(v)
	case json.Delim:
		if v == '{' {
			return "an object"
		}
		return "an array"
	}
	return fmt.Sprint(tok)
}

func quote(s string) string { return strconv.Quote(s) }
