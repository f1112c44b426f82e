package registry

import (
	"slices"
	"testing"
)

func TestRegistry(t *testing.T) {
	r := New[func() int]("widget")
	r.Register("b", func() int { return 2 })
	r.Register("a", func() int { return 1 })
	if got := r.Types(); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("Types() = %v", got)
	}
	for _, tc := range []struct {
		name    string
		want    int
		wantErr string
	}{
		{"a", 1, ""},
		{"b", 2, ""},
		{"c", 0, `unknown widget type "c" (known: [a b])`},
	} {
		f, err := r.Get(tc.name)
		switch {
		case tc.wantErr != "":
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("Get(%q): %v, want %q", tc.name, err, tc.wantErr)
			}
			if _, ok := r.Lookup(tc.name); ok {
				t.Errorf("Lookup(%q) found it", tc.name)
			}
		case err != nil || f() != tc.want:
			t.Errorf("Get(%q): %v", tc.name, err)
		}
	}
	defer func() {
		if p := recover(); p != "widgets: type registered twice: a" {
			t.Errorf("second Register: panic %v", p)
		}
	}()
	r.Register("a", func() int { return 3 })
}

func TestBuild(t *testing.T) {
	type factory func(s string) (int, error)
	r := New[factory]("widget")
	r.Register("len", func(s string) (int, error) { return len(s), nil })
	if n, err := Build(r, "len", "abc"); n != 3 || err != nil {
		t.Errorf("Build(len) = %d, %v", n, err)
	}
	if _, err := Build(r, "nope", "abc"); err == nil || err.Error() != `unknown widget type "nope" (known: [len])` {
		t.Errorf("Build(nope) error = %v", err)
	}
}
