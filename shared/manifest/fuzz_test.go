package manifest

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse checks that Parse never panics and that whatever it accepts has
// a canonical form that parses again to the same canonical form.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "valid", "*.json"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		``, `{}`, `null`, `[]`, `{"apiVersion":"mlfleet.io/v1"}`,
		`{"apiVersion":"mlfleet.io/v1","name":"m","runtime":"onnx","models":[{"name":"a","version":1}],"schema":{"inputs":[{"name":"x","type":"int8","shape":[-1,2]}]},"sampleData":[{"x":[[1,2],[3,4]]},{"x":[1,2.0,3e0,-0]}]}`,
		`{"apiVersion":"mlfleet.io/v1","name":"m","runtime":"exec","models":[{"name":"a","version":1,"path":"a/b"}],"scoring":{"command":["x"],"files":[{"path":"f","content":"<&>\u2028"}]},"dependencies":[{"kind":"file","name":"f"}],"schema":{"inputs":[{"name":"a b","type":"string","categories":["x"]}]},"baseline":{"features":{"a b":{"categories":{"x":1}}}}}`,
		`{"name":"m","name":"m"}`, `{"Name":"m"}`, `{"models":[{"version":1e400}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			return
		}
		c, err := m.Canonical()
		if err != nil {
			t.Fatalf("Parse accepted %q but Canonical failed: %v", b, err)
		}
		m2, err := Parse(c)
		if err != nil {
			t.Fatalf("canonical form %s does not parse: %v", c, err)
		}
		c2, err := m2.Canonical()
		if err != nil || !bytes.Equal(c, c2) {
			t.Fatalf("canonical form is not stable (%v):\n%s\n%s", err, c, c2)
		}
	})
}
