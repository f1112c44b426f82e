package storetest

import (
	"context"
	"strings"
	"testing"
)

// TestOpen: from this package's directory, two below the module root, the
// schema is found and a store opens on it.
func TestOpen(t *testing.T) {
	if s := Schema(t); !strings.Contains(s, "CREATE TABLE") {
		t.Fatalf("schema.sql without a table: %.200q", s)
	}
	st := Open(t, t.TempDir())
	defer st.Close()
	if _, err := st.CountBaseline(context.Background()); err != nil {
		t.Fatal(err)
	}
}
