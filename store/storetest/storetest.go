// Package storetest opens stores on the repository's schema.sql for the
// tests of the packages above the store (the binary embeds the file in
// package main, which tests cannot import).
package storetest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/openstack-synchronizer/synchronizer/store"
)

// Open opens the store dir/s.db on schema.sql with synchronous=normal, as
// the sidecar does by default. The caller closes it.
func Open(t testing.TB, dir string) *store.Store {
	t.Helper()
	st, err := store.Open(filepath.Join(dir, "s.db"), Schema(t), store.Options{Synchronous: "normal"})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// Schema returns schema.sql from the module root, the first directory
// with a go.mod above the test's working directory.
func Schema(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			b, err := os.ReadFile(filepath.Join(dir, "schema.sql"))
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		}
		up := filepath.Dir(dir)
		if up == dir {
			t.Fatal("storetest: no go.mod above the working directory")
		}
		dir = up
	}
}
