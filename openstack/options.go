package openstack

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/openstack-synchronizer/synchronizer/config"
)

// AllTypes is every entity type, in the order they are listed and reported.
var AllTypes = []string{TypeInstance, TypeHost, TypeZone, TypeNetwork, TypePort, TypeVolume, TypeStack}

// Defaults of Options.
const (
	DefaultRequestTimeout   = 30 * time.Second
	DefaultRetries          = 2
	DefaultRetryBackoff     = 500 * time.Millisecond
	DefaultPageSize         = 1000
	DefaultNovaMicroversion = "2.100"
	// DefaultFullEvery bounds how long a change that the APIs' change
	// filters cannot see (a tag-only change, an archived deleted row, a
	// cell that was down) may stay unseen: the default interval of
	// Vitrage's own drivers' full listings.
	DefaultFullEvery = 10 * time.Minute
	// DefaultDeltaOverlap is subtracted from the server's clock to make a
	// watermark: rows written by a transaction still open when the
	// listing ran, and clocks of other hosts (nova-compute writes
	// updated_at with its own), a few seconds behind the API's.
	DefaultDeltaOverlap = 10 * time.Second
)

// AuthInfo is the auth: section of a clouds.yaml entry, or the inline auth:
// of a collector. Secrets (Password, Token, ApplicationCredentialSecret)
// never appear in logs, errors or status.
type AuthInfo struct {
	AuthURL                     string `yaml:"auth_url"`
	Username                    string `yaml:"username"`
	UserID                      string `yaml:"user_id"`
	Password                    string `yaml:"password"`
	ProjectID                   string `yaml:"project_id"`
	ProjectName                 string `yaml:"project_name"`
	ProjectDomainID             string `yaml:"project_domain_id"`
	ProjectDomainName           string `yaml:"project_domain_name"`
	UserDomainID                string `yaml:"user_domain_id"`
	UserDomainName              string `yaml:"user_domain_name"`
	DomainID                    string `yaml:"domain_id"`
	DomainName                  string `yaml:"domain_name"`
	Token                       string `yaml:"token"`
	ApplicationCredentialID     string `yaml:"application_credential_id"`
	ApplicationCredentialName   string `yaml:"application_credential_name"`
	ApplicationCredentialSecret string `yaml:"application_credential_secret"`
	SystemScope                 string `yaml:"system_scope"`
}

// Options are the openstack collector's own settings. The collector's config
// entry embeds them inline next to config.Common.
type Options struct {
	// Cloud names an entry of clouds.yaml; empty uses OS_CLOUD, and without
	// that the OS_* variables alone.
	Cloud string `yaml:"cloud"`
	// CloudsFile is an explicit clouds.yaml path (relative to the config
	// file), instead of the OpenStack client's search.
	CloudsFile string `yaml:"clouds_file"`
	// Auth overrides the cloud's auth fields one by one.
	Auth *AuthInfo `yaml:"auth"`
	// Region, Interface, CACert and Insecure override the cloud's.
	Region    string `yaml:"region"`
	Interface string `yaml:"interface"`
	CACert    string `yaml:"cacert"`
	Insecure  *bool  `yaml:"insecure"`
	// Types to list; empty lists all of AllTypes.
	Types []string `yaml:"types"`
	// RequestTimeout bounds one HTTP request (one page).
	RequestTimeout config.Duration `yaml:"request_timeout"`
	// Retries is how many times a request is retried after a 5xx, 429,
	// connection error or time-out.
	Retries *int `yaml:"retries"`
	// RetryBackoff is the first wait between retries; it doubles each time.
	RetryBackoff config.Duration `yaml:"retry_backoff"`
	// PageSize is the limit asked for on each page; the service may cap it
	// lower, which pagination follows.
	PageSize int `yaml:"page_size"`
	// NovaMicroversion is the highest Nova microversion wanted; a lower one
	// is used when the cloud is older.
	NovaMicroversion string `yaml:"nova_microversion"`
	// Incremental lists only what changed since the last poll, through the
	// APIs' own change filters, for the types whose API has one
	// (nova.instance, neutron.network, neutron.port, cinder.volume);
	// default true.
	Incremental *bool `yaml:"incremental"`
	// FullEvery is how often a type listed incrementally is listed in full
	// all the same.
	FullEvery config.Duration `yaml:"full_every"`
	// DeltaOverlap is how far before the server's clock of the last
	// listing the next change listing starts.
	DeltaOverlap config.Duration `yaml:"delta_overlap"`
}

// ErrOptions is wrapped by every error of Options.Validate.
var ErrOptions = errors.New("invalid openstack settings")

// withDefaults returns o with empty fields set to their defaults.
func (o Options) withDefaults() Options {
	if len(o.Types) == 0 {
		o.Types = slices.Clone(AllTypes)
	}
	o.RequestTimeout = cmp.Or(o.RequestTimeout, config.Duration(DefaultRequestTimeout))
	if o.Retries == nil {
		r := DefaultRetries
		o.Retries = &r
	}
	o.RetryBackoff = cmp.Or(o.RetryBackoff, config.Duration(DefaultRetryBackoff))
	o.PageSize = cmp.Or(o.PageSize, DefaultPageSize)
	o.NovaMicroversion = cmp.Or(o.NovaMicroversion, DefaultNovaMicroversion)
	if o.Incremental == nil {
		b := true
		o.Incremental = &b
	}
	o.FullEvery = cmp.Or(o.FullEvery, config.Duration(DefaultFullEvery))
	o.DeltaOverlap = cmp.Or(o.DeltaOverlap, config.Duration(DefaultDeltaOverlap))
	return o
}

// Validate checks the settings after defaults, naming the bad field.
func (o Options) Validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%w: %s: %s", ErrOptions, field, fmt.Sprintf(format, a...)))
	}
	seen := map[string]bool{}
	for _, t := range o.Types {
		if !slices.Contains(AllTypes, t) {
			bad("types", "unknown type %q (known: %s)", t, strings.Join(AllTypes, ", "))
		}
		if seen[t] {
			bad("types", "%q listed twice", t)
		}
		seen[t] = true
	}
	if o.RequestTimeout.D() <= 0 {
		bad("request_timeout", "must be > 0")
	}
	if o.Retries != nil && (*o.Retries < 0 || *o.Retries > 10) {
		bad("retries", "must be between 0 and 10")
	}
	if o.RetryBackoff.D() < 0 {
		bad("retry_backoff", "must not be negative")
	}
	if o.PageSize < 0 {
		bad("page_size", "must not be negative")
	}
	if o.FullEvery.D() < 0 {
		bad("full_every", "must not be negative")
	}
	if o.DeltaOverlap.D() < 0 {
		bad("delta_overlap", "must not be negative")
	}
	if minorOf(o.NovaMicroversion) < 1 {
		bad("nova_microversion", "%q is not a 2.N microversion", o.NovaMicroversion)
	}
	switch o.Interface {
	case "", "public", "internal", "admin", "publicURL", "internalURL", "adminURL":
	default:
		bad("interface", "must be public, internal or admin, not %q", o.Interface)
	}
	return errors.Join(errs...)
}
