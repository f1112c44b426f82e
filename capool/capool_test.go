package capool

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openstack-synchronizer/synchronizer/capool/capooltest"
)

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name, path, wantErr string
	}{
		{"a CA", capooltest.WriteCA(t, dir, "ca.pem"), ""},
		{"no certificate", write("empty.pem", "not a certificate\n"), "empty.pem: no PEM certificate in it"},
		{"missing", filepath.Join(dir, "missing.pem"), "open " + filepath.Join(dir, "missing.pem")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pool, err := Load(tc.path)
			switch {
			case tc.wantErr == "" && (err != nil || pool == nil):
				t.Errorf("Load: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("Load: %v, want %q", err, tc.wantErr)
			}
		})
	}
}
