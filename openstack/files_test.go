package openstack

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestOptionsFiles: the files reported for watching are the ones
// resolveCloud reads, XDG_CONFIG_HOME replacing ~/.config as in
// cloudsFiles.
func TestOptionsFiles(t *testing.T) {
	home, err := os.UserHomeDir()
	if err != nil {
		t.Skip(err)
	}
	for _, tc := range []struct {
		name string
		o    Options
		env  map[string]string
		want []string
	}{
		{"no cloud named", Options{CloudsFile: "c.yaml"}, nil, nil},
		{"clouds_file", Options{Cloud: "x", CloudsFile: "c.yaml", CACert: "/etc/ca.pem"}, nil, []string{"/cfg/c.yaml", "/etc/ca.pem"}},
		{"search path", Options{Cloud: "x"}, nil,
			[]string{"clouds.yaml", filepath.Join(home, ".config/openstack/clouds.yaml"), "/etc/openstack/clouds.yaml"}},
		{"XDG_CONFIG_HOME", Options{}, map[string]string{"OS_CLOUD": "x", "XDG_CONFIG_HOME": "/xdg"},
			[]string{"clouds.yaml", "/xdg/openstack/clouds.yaml", "/etc/openstack/clouds.yaml"}},
		{"OS_CLIENT_CONFIG_FILE", Options{Cloud: "x", CACert: "ca.pem"}, map[string]string{"OS_CLIENT_CONFIG_FILE": "/c.yaml"},
			[]string{"/c.yaml", "/cfg/ca.pem"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			orig := env
			env = func(k string) string { return tc.env[k] }
			t.Cleanup(func() { env = orig })
			if got := tc.o.Files("/cfg"); !slices.Equal(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}
