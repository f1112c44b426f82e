package openstack

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"

	"github.com/openstack-synchronizer/synchronizer/config"
	"github.com/openstack-synchronizer/synchronizer/openstack/openstacktest"
)

const cloudsDoc = `clouds:
  mycloud:
    auth:
      auth_url: https://keystone.example.com/v3
      username: admin
      password: from-clouds-yaml
      project_name: admin
      project_domain_name: Default
      user_domain_name: Default
    region_name: RegionTwo
    interface: internalURL
    verify: false
`

// clearEnv unsets every variable the lookup reads, so the machine's own
// OpenStack settings cannot leak into a test.
func clearEnv(t *testing.T) {
	for _, k := range []string{"OS_CLIENT_CONFIG_FILE", "OS_CLOUD", "OS_AUTH_URL", "OS_USERNAME", "OS_PASSWORD",
		"OS_PROJECT_ID", "OS_PROJECT_NAME", "OS_TENANT_ID", "OS_TENANT_NAME", "OS_REGION_NAME", "OS_INTERFACE",
		"OS_ENDPOINT_TYPE", "OS_CACERT", "OS_INSECURE", "OS_USER_DOMAIN_NAME", "OS_PROJECT_DOMAIN_NAME", "OS_TOKEN"} {
		t.Setenv(k, "")
	}
	t.Setenv("XDG_CONFIG_HOME", "")
	t.Setenv("HOME", t.TempDir())
}

func writeFile(t *testing.T, path, body string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// clouds.yaml is found where the OpenStack client looks for it.
func TestCloudsYAMLSearch(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T) string // returns the path expected to be used
	}{
		{"OS_CLIENT_CONFIG_FILE", func(t *testing.T) string {
			p := writeFile(t, filepath.Join(t.TempDir(), "any-name.yaml"), cloudsDoc)
			t.Setenv("OS_CLIENT_CONFIG_FILE", p)
			return p
		}},
		{"current directory", func(t *testing.T) string {
			d := t.TempDir()
			writeFile(t, filepath.Join(d, "clouds.yaml"), cloudsDoc)
			t.Chdir(d)
			return "clouds.yaml"
		}},
		{"XDG_CONFIG_HOME", func(t *testing.T) string {
			d := t.TempDir()
			t.Setenv("XDG_CONFIG_HOME", d)
			return writeFile(t, filepath.Join(d, "openstack", "clouds.yaml"), cloudsDoc)
		}},
		{"~/.config/openstack", func(t *testing.T) string {
			h, _ := os.UserHomeDir()
			return writeFile(t, filepath.Join(h, ".config", "openstack", "clouds.yaml"), cloudsDoc)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			t.Chdir(t.TempDir())
			want := tt.setup(t)
			c, err := resolveCloud(Options{Cloud: "mycloud"}, "")
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasSuffix(c.source, want) {
				t.Errorf("source = %s, want %s", c.source, want)
			}
			if c.auth.Password != "from-clouds-yaml" || c.region != "RegionTwo" || c.iface != gophercloud.AvailabilityInternal || !c.insecure {
				t.Errorf("cloud = %+v", c)
			}
			ao := c.authOptions()
			if ao.Scope == nil || ao.Scope.ProjectName != "admin" || ao.Scope.DomainName != "Default" || ao.DomainName != "Default" || !ao.AllowReauth {
				t.Errorf("auth options scope %+v, user domain %q", ao.Scope, ao.DomainName)
			}
		})
	}
}

// OS_CLOUD names the cloud; secure.yaml beside clouds.yaml adds secrets;
// the collector's own keys override the cloud's.
func TestCloudOverrides(t *testing.T) {
	clearEnv(t)
	d := t.TempDir()
	p := writeFile(t, filepath.Join(d, "clouds.yaml"), strings.Replace(cloudsDoc, "      password: from-clouds-yaml\n", "", 1))
	writeFile(t, filepath.Join(d, "secure.yaml"), "clouds:\n  mycloud:\n    auth:\n      password: from-secure-yaml\n")
	t.Setenv("OS_CLIENT_CONFIG_FILE", p)
	t.Setenv("OS_CLOUD", "mycloud")
	c, err := resolveCloud(Options{}, "")
	if err != nil {
		t.Fatal(err)
	}
	if c.auth.Password != "from-secure-yaml" || !slices.Contains(c.secrets, "from-secure-yaml") {
		t.Errorf("secure.yaml not merged: %+v", c.auth)
	}
	f := false
	c, err = resolveCloud(Options{Region: "RegionOne", Interface: "admin", Insecure: &f, Auth: &AuthInfo{Username: "other"}}, "")
	if err != nil {
		t.Fatal(err)
	}
	if c.region != "RegionOne" || c.iface != gophercloud.AvailabilityAdmin || c.insecure || c.auth.Username != "other" || c.auth.Password != "from-secure-yaml" {
		t.Errorf("overrides not applied: %+v", c)
	}
}

// Without a cloud name, the OS_* variables are the settings.
func TestEnvAuth(t *testing.T) {
	clearEnv(t)
	srv, err := openstacktest.New(openstacktest.Options{Password: testPassword})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	t.Setenv("OS_AUTH_URL", srv.AuthURL())
	t.Setenv("OS_USERNAME", "admin")
	t.Setenv("OS_PASSWORD", testPassword)
	t.Setenv("OS_PROJECT_ID", openstacktest.ProjectID)
	t.Setenv("OS_USER_DOMAIN_NAME", "Default")
	t.Setenv("OS_INTERFACE", "internal")
	c, err := New(Options{Types: []string{TypeZone}}, "", discardLog())
	if err != nil {
		t.Fatal(err)
	}
	snap, err := c.Collect(context.Background())
	if err != nil || len(snap.Entities) != 1 {
		t.Fatalf("collect: %v, %v", snap, err)
	}
}

// Errors name the file and line, never a value (values can be passwords).
func TestCloudErrors(t *testing.T) {
	clearEnv(t)
	d := t.TempDir()
	tests := []struct {
		name, doc, cloud, want string
	}{
		{"missing cloud", cloudsDoc, "other", `cloud "other" not found in`},
		{"not yaml", "clouds: [unclosed\n  password: leaky-secret", "mycloud", "not a valid clouds.yaml"},
		{"bad entry", "clouds:\n  mycloud:\n    auth: leaky-secret\n", "mycloud", "(line 3): not a valid cloud entry"},
		{"no auth_url", "clouds:\n  mycloud:\n    auth: {username: u, password: leaky-secret}\n", "mycloud", "no auth_url"},
	}
	for _, tt := range tests {
		p := writeFile(t, filepath.Join(d, tt.name+".yaml"), tt.doc)
		_, err := resolveCloud(Options{Cloud: tt.cloud, CloudsFile: filepath.Base(p)}, d)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want %q", tt.name, err, tt.want)
			continue
		}
		if strings.Contains(err.Error(), "leaky-secret") {
			t.Errorf("%s: value in error: %v", tt.name, err)
		}
	}
	_, err := resolveCloud(Options{Cloud: "mycloud"}, "")
	if err == nil || !strings.Contains(err.Error(), "no clouds.yaml found (searched clouds.yaml, ") || !strings.Contains(err.Error(), "/etc/openstack/clouds.yaml") {
		t.Errorf("no file: err = %v", err)
	}
	p := writeFile(t, filepath.Join(d, "ca.yaml"), cloudsDoc)
	_, err = resolveCloud(Options{Cloud: "mycloud", CloudsFile: p, CACert: "missing.pem"}, d)
	if err == nil || !strings.Contains(err.Error(), "cacert") {
		t.Errorf("missing cacert: err = %v", err)
	}
}

func TestOptionsValidate(t *testing.T) {
	neg := -1
	tests := []struct {
		o    Options
		want string
	}{
		{Options{Types: []string{"nova.flavor"}}, `types: unknown type "nova.flavor"`},
		{Options{Types: []string{TypeHost, TypeHost}}, `types: "nova.host" listed twice`},
		{Options{Retries: &neg}, "retries: must be between 0 and 10"},
		{Options{NovaMicroversion: "3.1"}, `nova_microversion: "3.1" is not a 2.N microversion`},
		{Options{Interface: "private"}, `interface: must be public, internal or admin, not "private"`},
		{Options{PageSize: -5}, "page_size: must not be negative"},
		{Options{FullEvery: config.Duration(-time.Second)}, "full_every: must not be negative"},
		{Options{DeltaOverlap: config.Duration(-time.Second)}, "delta_overlap: must not be negative"},
	}
	for _, tt := range tests {
		err := tt.o.withDefaults().Validate()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: err = %v, want %q", tt.o, err, tt.want)
		}
	}
	d := (Options{}).withDefaults()
	if err := d.Validate(); err != nil {
		t.Errorf("defaults invalid: %v", err)
	}
	if !*d.Incremental || d.FullEvery.D() != DefaultFullEvery || d.DeltaOverlap.D() != DefaultDeltaOverlap {
		t.Errorf("defaults: incremental %v, full_every %v, delta_overlap %v", *d.Incremental, d.FullEvery, d.DeltaOverlap)
	}
}
