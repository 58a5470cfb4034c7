package errclass

import (
	"errors"
	"fmt"
	"testing"
)

func TestClassAndFieldThroughWraps(t *testing.T) {
	base := Invalid("schema.inputs[2].type", "type %q is unknown", "float128")
	cases := []struct {
		name  string
		err   error
		class Class
		field string
		msg   string
	}{
		{"plain", errors.New("x"), Unknown, "", "x"},
		{"nil", nil, Unknown, "", ""},
		{"classified", base, InvalidArgument, "schema.inputs[2].type", `type "float128" is unknown`},
		{"wrapped", fmt.Errorf("create manifest: %w", base), InvalidArgument, "schema.inputs[2].type", `create manifest: type "float128" is unknown`},
		{"reclassified keeps inner field", Wrap(Conflict, base, "cannot store"), Conflict, "schema.inputs[2].type", `cannot store: type "float128" is unknown`},
		{"wrap nil", Wrap(NotFound, nil, "x"), Unknown, "", ""},
		{"not found", NotFoundf("model %q", "m"), NotFound, "", `model "m"`},
		{"conflict", Conflictf("busy"), Conflict, "", "busy"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := ClassOf(c.err); got != c.class {
				t.Errorf("ClassOf = %q, want %q", got, c.class)
			}
			if got := FieldOf(c.err); got != c.field {
				t.Errorf("FieldOf = %q, want %q", got, c.field)
			}
			if c.err != nil && c.err.Error() != c.msg {
				t.Errorf("Error() = %q, want %q", c.err.Error(), c.msg)
			}
			if c.err != nil && !Is(c.err, c.class) {
				t.Errorf("Is(%q) = false", c.class)
			}
		})
	}
	if (&Error{Class: Unavailable}).Error() != "unavailable" {
		t.Error("empty error should print its class")
	}
}
