package openstack

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/gophercloud/gophercloud/v2"
	"gopkg.in/yaml.v3"

	"github.com/openstack-synchronizer/synchronizer/capool"
)

// cloudEntry is one entry of clouds.yaml's clouds: map. Unknown keys are
// ignored, as the OpenStack client ignores them.
type cloudEntry struct {
	Auth         AuthInfo `yaml:"auth"`
	RegionName   string   `yaml:"region_name"`
	Interface    string   `yaml:"interface"`
	EndpointType string   `yaml:"endpoint_type"`
	CACert       string   `yaml:"cacert"`
	Verify       *bool    `yaml:"verify"`
	Insecure     *bool    `yaml:"insecure"`
}

// cloud is the resolved connection: who we are and where to look.
type cloud struct {
	auth      AuthInfo
	region    string
	iface     gophercloud.Availability
	cacert    string
	insecure  bool
	source    string // where the settings came from, for messages
	secrets   []string
	tlsConfig *tls.Config
}

// env reads the environment; tests replace it.
var env = os.Getenv

// cloudsFiles lists where clouds.yaml is searched, as the OpenStack client
// does: OS_CLIENT_CONFIG_FILE alone when set, else ./clouds.yaml,
// ~/.config/openstack (XDG_CONFIG_HOME honoured), /etc/openstack.
func cloudsFiles() []string {
	if p := env("OS_CLIENT_CONFIG_FILE"); p != "" {
		return []string{p}
	}
	out := []string{"clouds.yaml"}
	if x := env("XDG_CONFIG_HOME"); x != "" {
		out = append(out, filepath.Join(x, "openstack", "clouds.yaml"))
	} else if h, err := os.UserHomeDir(); err == nil {
		out = append(out, filepath.Join(h, ".config", "openstack", "clouds.yaml"))
	}
	return append(out, "/etc/openstack/clouds.yaml")
}

// resolveCloud builds the connection settings: the clouds.yaml entry (when a
// cloud is named by the collector or OS_CLOUD) or the OS_* variables, then
// the collector's own overrides. dir resolves a relative clouds_file and
// cacert of the collector.
func resolveCloud(o Options, dir string) (*cloud, error) {
	c := &cloud{}
	name := o.Cloud
	if name == "" {
		name = env("OS_CLOUD")
	}
	var entry cloudEntry
	if name != "" {
		e, path, err := loadCloud(name, o.cloudsFiles(dir))
		if err != nil {
			return nil, err
		}
		entry, c.source = e, fmt.Sprintf("cloud %q in %s", name, path)
	} else {
		entry, c.source = envCloud(), "OS_* environment variables"
	}
	c.auth = entry.Auth
	c.region = first(o.Region, entry.RegionName)
	c.cacert = first(abs(dir, o.CACert), entry.CACert)
	iface := first(o.Interface, entry.Interface, entry.EndpointType, "public")
	c.iface = gophercloud.Availability(strings.TrimSuffix(iface, "URL"))
	switch {
	case o.Insecure != nil:
		c.insecure = *o.Insecure
	case entry.Insecure != nil:
		c.insecure = *entry.Insecure
	case entry.Verify != nil:
		c.insecure = !*entry.Verify
	}
	if o.Auth != nil {
		overlay(&c.auth, *o.Auth)
	}
	if c.auth.AuthURL == "" {
		return nil, fmt.Errorf("openstack: %s: no auth_url", c.source)
	}
	for _, s := range []string{c.auth.Password, c.auth.Token, c.auth.ApplicationCredentialSecret} {
		if s != "" {
			c.secrets = append(c.secrets, s)
		}
	}
	tc := &tls.Config{InsecureSkipVerify: c.insecure} //nolint:gosec // the operator's choice, as in clouds.yaml
	if c.cacert != "" {
		pool, err := capool.Load(c.cacert)
		if err != nil {
			return nil, fmt.Errorf("openstack: cacert: %w", err)
		}
		tc.RootCAs = pool
	}
	c.tlsConfig = tc
	return c, nil
}

// loadCloud finds the first existing clouds.yaml of files and reads the named
// entry, with secure.yaml beside it merged over it. YAML errors are reported
// by line only: their text can quote a value, and values can be passwords.
func loadCloud(name string, files []string) (cloudEntry, string, error) {
	for _, f := range files {
		b, err := os.ReadFile(f)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return cloudEntry{}, "", fmt.Errorf("openstack: %w", err)
		}
		var doc struct {
			Clouds map[string]yaml.Node `yaml:"clouds"`
		}
		if err := yaml.Unmarshal(b, &doc); err != nil {
			return cloudEntry{}, "", fmt.Errorf("openstack: %s: not a valid clouds.yaml", f)
		}
		n, ok := doc.Clouds[name]
		if !ok {
			return cloudEntry{}, "", fmt.Errorf("openstack: cloud %q not found in %s", name, f)
		}
		var e cloudEntry
		if err := n.Decode(&e); err != nil {
			return cloudEntry{}, "", fmt.Errorf("openstack: %s: cloud %q (line %d): not a valid cloud entry", f, name, n.Line)
		}
		sec := filepath.Join(filepath.Dir(f), "secure.yaml")
		if sb, err := os.ReadFile(sec); err == nil {
			var sdoc struct {
				Clouds map[string]cloudEntry `yaml:"clouds"`
			}
			if err := yaml.Unmarshal(sb, &sdoc); err != nil {
				return cloudEntry{}, "", fmt.Errorf("openstack: %s: not a valid secure.yaml", sec)
			}
			if s, ok := sdoc.Clouds[name]; ok {
				overlay(&e.Auth, s.Auth)
			}
		}
		return e, f, nil
	}
	return cloudEntry{}, "", fmt.Errorf("openstack: cloud %q: no clouds.yaml found (searched %s)", name, strings.Join(files, ", "))
}

// envCloud reads the OS_* variables the OpenStack client reads.
func envCloud() cloudEntry {
	e := cloudEntry{
		Auth: AuthInfo{
			AuthURL:                     env("OS_AUTH_URL"),
			Username:                    env("OS_USERNAME"),
			UserID:                      env("OS_USER_ID"),
			Password:                    env("OS_PASSWORD"),
			ProjectID:                   first(env("OS_PROJECT_ID"), env("OS_TENANT_ID")),
			ProjectName:                 first(env("OS_PROJECT_NAME"), env("OS_TENANT_NAME")),
			ProjectDomainID:             env("OS_PROJECT_DOMAIN_ID"),
			ProjectDomainName:           env("OS_PROJECT_DOMAIN_NAME"),
			UserDomainID:                env("OS_USER_DOMAIN_ID"),
			UserDomainName:              env("OS_USER_DOMAIN_NAME"),
			DomainID:                    env("OS_DOMAIN_ID"),
			DomainName:                  env("OS_DOMAIN_NAME"),
			Token:                       env("OS_TOKEN"),
			ApplicationCredentialID:     env("OS_APPLICATION_CREDENTIAL_ID"),
			ApplicationCredentialName:   env("OS_APPLICATION_CREDENTIAL_NAME"),
			ApplicationCredentialSecret: env("OS_APPLICATION_CREDENTIAL_SECRET"),
			SystemScope:                 env("OS_SYSTEM_SCOPE"),
		},
		RegionName: env("OS_REGION_NAME"),
		Interface:  first(env("OS_INTERFACE"), env("OS_ENDPOINT_TYPE")),
		CACert:     env("OS_CACERT"),
	}
	if v := strings.ToLower(env("OS_INSECURE")); v == "true" || v == "1" || v == "yes" {
		t := true
		e.Insecure = &t
	}
	return e
}

// authOptions turns the auth fields into gophercloud's, scoped the way the
// OpenStack client scopes them.
func (c *cloud) authOptions() gophercloud.AuthOptions {
	a := c.auth
	ao := gophercloud.AuthOptions{
		IdentityEndpoint:            a.AuthURL,
		Username:                    a.Username,
		UserID:                      a.UserID,
		Password:                    a.Password,
		DomainID:                    first(a.UserDomainID, a.DomainID),
		DomainName:                  first(a.UserDomainName, a.DomainName),
		TokenID:                     a.Token,
		ApplicationCredentialID:     a.ApplicationCredentialID,
		ApplicationCredentialName:   a.ApplicationCredentialName,
		ApplicationCredentialSecret: a.ApplicationCredentialSecret,
		AllowReauth:                 a.Token == "",
	}
	switch {
	case a.ApplicationCredentialID != "" || a.ApplicationCredentialName != "":
		// An application credential carries its own scope.
	case a.SystemScope == "all":
		ao.Scope = &gophercloud.AuthScope{System: true}
	case a.ProjectID != "":
		ao.Scope = &gophercloud.AuthScope{ProjectID: a.ProjectID}
	case a.ProjectName != "":
		ao.Scope = &gophercloud.AuthScope{
			ProjectName: a.ProjectName,
			DomainID:    first(a.ProjectDomainID, a.DomainID),
			DomainName:  first(a.ProjectDomainName, a.DomainName),
		}
	case a.DomainID != "" || a.DomainName != "":
		ao.Scope = &gophercloud.AuthScope{DomainID: a.DomainID, DomainName: a.DomainName}
	}
	return ao
}

// overlay copies the non-empty fields of o onto a.
func overlay(a *AuthInfo, o AuthInfo) {
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&a.AuthURL, o.AuthURL)
	set(&a.Username, o.Username)
	set(&a.UserID, o.UserID)
	set(&a.Password, o.Password)
	set(&a.ProjectID, o.ProjectID)
	set(&a.ProjectName, o.ProjectName)
	set(&a.ProjectDomainID, o.ProjectDomainID)
	set(&a.ProjectDomainName, o.ProjectDomainName)
	set(&a.UserDomainID, o.UserDomainID)
	set(&a.UserDomainName, o.UserDomainName)
	set(&a.DomainID, o.DomainID)
	set(&a.DomainName, o.DomainName)
	set(&a.Token, o.Token)
	set(&a.ApplicationCredentialID, o.ApplicationCredentialID)
	set(&a.ApplicationCredentialName, o.ApplicationCredentialName)
	set(&a.ApplicationCredentialSecret, o.ApplicationCredentialSecret)
	set(&a.SystemScope, o.SystemScope)
}

func first(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

func abs(dir, p string) string {
	if p == "" || filepath.IsAbs(p) || dir == "" {
		return p
	}
	return filepath.Join(dir, p)
}
