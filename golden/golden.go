// Package golden compares what a test produced with a file under testdata
// that pins it; go test -update rewrites the file, when a change is meant.
package golden

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files the tests compare with")

// Check compares got, a newline added, with the file at path.
func Check(t testing.TB, path string, got []byte) {
	t.Helper()
	got = append(got, '\n')
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("%s changed (go test -update rewrites it, if the change is meant)\ngot:  %s\nwant: %s", path, got, want)
	}
}
