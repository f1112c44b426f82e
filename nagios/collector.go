// Package nagios turns the state of a Nagios Core into alarm entities: every
// service that is not OK and every host that is DOWN or UNREACHABLE, each on
// the resource its Nagios host is mapped to. It reads either the status.dat
// file of a Nagios on the same machine or the JSON CGI (statusjson.cgi) of a
// remote one, and treats a file it cannot read whole or an HTTP answer it
// cannot use as a failed poll, never as "no alarms".
package nagios

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/openstack-synchronizer/synchronizer/capool"
	"github.com/openstack-synchronizer/synchronizer/config"
	"github.com/openstack-synchronizer/synchronizer/entity"
)

// Type is the entity type of every alarm, as in Vitrage.
const Type = entity.TypeNagios

// HostService is the service part of the id of a host alarm:
// "nagios:<host>:HOST". Nagios allows a service of that name, which would
// then share the key; the host alarm wins (see Collect).
const HostService = "HOST"

// Options are the nagios collector's own config keys; the collector entry
// embeds them inline beside config.Common.
type Options struct {
	// StatusFile is the status.dat of a local Nagios (status_file in
	// nagios.cfg). Exactly one of StatusFile and URL is set.
	StatusFile string `yaml:"status_file"`
	// URL is the address of statusjson.cgi of a Nagios Core 4.
	URL  string `yaml:"url"`
	User string `yaml:"user"`
	// Password is the basic-auth password; PasswordEnv names an environment
	// variable to take it from instead, so it need not be in the file.
	Password    string `yaml:"password"`
	PasswordEnv string `yaml:"password_env"`
	// CAFile is a PEM file of the certificate authorities to trust for an
	// https URL instead of the system's (a Nagios with its own CA).
	CAFile string `yaml:"ca_file"`
	// HostMapping maps Nagios host names to resources; HostMappingFile reads
	// the rules from a Vitrage nagios_conf.yaml and comes after them.
	HostMapping     []Mapping `yaml:"host_mapping"`
	HostMappingFile string    `yaml:"host_mapping_file"`
	// MaxAge fails a poll whose data Nagios last updated longer ago than
	// this (a stopped Nagios leaves its last status behind); 0 disables.
	MaxAge config.Duration `yaml:"max_age"`
}

// Collector polls one Nagios. It is safe for one Collect at a time, which is
// how the poll loop calls it.
type Collector struct {
	statusFile string
	cgi        *CGI
	mapper     *Mapper
	maxAge     time.Duration
	log        *slog.Logger
	now        func() time.Time
	files      []string // read when built: ca_file, host_mapping_file

	mu   sync.Mutex
	last map[string]any // figures of the last successful poll, for Status
}

// New checks the options and builds a collector without contacting Nagios.
// Relative paths are relative to dir; timeout bounds each HTTP request (the
// poll's context bounds the whole poll as well).
func New(o Options, timeout time.Duration, dir string, logger *slog.Logger) (*Collector, error) {
	if logger == nil {
		logger = slog.Default()
	}
	c := &Collector{log: logger, maxAge: o.MaxAge.D(), now: time.Now}
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	switch {
	case o.StatusFile != "" && o.URL != "":
		return nil, errors.New("status_file and url: set one, not both")
	case o.StatusFile != "":
		if o.User != "" || o.Password != "" || o.PasswordEnv != "" || o.CAFile != "" {
			return nil, errors.New("user, password, password_env, ca_file: only with url")
		}
		c.statusFile = abs(o.StatusFile)
	case o.URL != "":
		o.CAFile = abs(o.CAFile)
		if o.CAFile != "" {
			c.files = append(c.files, o.CAFile)
		}
		cgi, err := newCGI(o, timeout)
		if err != nil {
			return nil, err
		}
		c.cgi = cgi
	default:
		return nil, errors.New("status_file or url: required")
	}
	if o.MaxAge < 0 {
		return nil, errors.New("max_age: must not be negative")
	}
	rules := append([]Mapping(nil), o.HostMapping...)
	if o.HostMappingFile != "" {
		c.files = append(c.files, abs(o.HostMappingFile))
		more, err := LoadMappingFile(abs(o.HostMappingFile))
		if err != nil {
			return nil, err
		}
		rules = append(rules, more...)
	}
	m, err := NewMapper(rules)
	if err != nil {
		return nil, err
	}
	c.mapper = m
	return c, nil
}

// Files lists the files the collector read when it was built (ca_file,
// host_mapping_file): the sidecar rebuilds it when one is edited.
func (c *Collector) Files() []string { return c.files }

func newCGI(o Options, timeout time.Duration) (*CGI, error) {
	u, err := url.Parse(o.URL)
	if err != nil {
		// url.Error quotes the whole URL, credentials and all.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("url: cannot parse it: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("url: scheme must be http or https, not %q", u.Scheme)
	}
	if u.User != nil {
		return nil, errors.New("url: put credentials in user and password, not in the URL")
	}
	if u.RawQuery != "" {
		return nil, errors.New("url: give the address of statusjson.cgi without a query")
	}
	if o.Password != "" && o.PasswordEnv != "" {
		return nil, errors.New("password and password_env: set one, not both")
	}
	pw := o.Password
	if o.PasswordEnv != "" {
		v, ok := os.LookupEnv(o.PasswordEnv)
		if !ok {
			return nil, fmt.Errorf("password_env: environment variable %s is not set", o.PasswordEnv)
		}
		pw = v
	}
	if pw != "" && o.User == "" {
		return nil, errors.New("user: required with a password")
	}
	client := &http.Client{Timeout: timeout}
	if o.CAFile != "" {
		pool, err := capool.Load(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		client.Transport = tr
	}
	return &CGI{URL: o.URL, User: o.User, Password: pw, Client: client}, nil
}

// Collect reads the whole state of Nagios and returns one alarm per problem.
// Any error (unreadable or truncated file, HTTP error, time-out, an answer
// without hosts) fails the poll, so that no alarm is deleted by mistake.
func (c *Collector) Collect(ctx context.Context) (*entity.Snapshot, error) {
	var (
		hosts, services []Check
		updated         time.Time
		err             error
	)
	if c.cgi != nil {
		hosts, services, updated, err = c.readCGI(ctx)
	} else {
		hosts, services, updated, err = c.readFile()
	}
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("nagios: %w", err)
	}
	// Nagios refuses to start without hosts, so an empty list means a CGI
	// user who may see nothing or a file that lost its hoststatus blocks.
	if len(hosts) == 0 {
		return nil, errors.New("nagios: no hosts listed (is the CGI user authorized for hosts?)")
	}
	if c.maxAge > 0 && !updated.IsZero() {
		if age := c.now().Sub(updated); age > c.maxAge {
			return nil, fmt.Errorf("nagios: status last updated %s ago (max_age %s): is Nagios running?",
				age.Round(time.Second), c.maxAge)
		}
	}
	ents := c.alarms(hosts, services)
	c.mu.Lock()
	c.last = map[string]any{"hosts": len(hosts), "services": len(services), "alarms": len(ents)}
	if !updated.IsZero() {
		c.last["nagios_updated"] = updated.Format(time.RFC3339)
	}
	c.mu.Unlock()
	return &entity.Snapshot{Types: []string{Type}, Entities: ents}, nil
}

// Status reports where the collector reads from (the URL without
// credentials, which are never in it) and the figures of its last
// successful poll.
func (c *Collector) Status() map[string]any {
	out := map[string]any{}
	if c.cgi != nil {
		out["url"] = c.cgi.URL
	} else {
		out["status_file"] = c.statusFile
	}
	c.mu.Lock()
	for k, v := range c.last {
		out[k] = v
	}
	c.mu.Unlock()
	return out
}

func (c *Collector) readFile() (hosts, services []Check, updated time.Time, err error) {
	st, err := ReadStatusFile(c.statusFile)
	if err != nil {
		return nil, nil, time.Time{}, err
	}
	hosts, services, err = st.Checks()
	if err != nil {
		return nil, nil, time.Time{}, fmt.Errorf("%w (%s)", err, c.statusFile)
	}
	return hosts, services, st.Created(), nil
}

func (c *Collector) readCGI(ctx context.Context) (hosts, services []Check, updated time.Time, err error) {
	hosts, updated, err = c.cgi.Hosts(ctx)
	if err != nil {
		return nil, nil, time.Time{}, err
	}
	services, _, err = c.cgi.Services(ctx)
	if err != nil {
		return nil, nil, time.Time{}, err
	}
	return hosts, services, updated, nil
}

// Check reads a local status file as a poll would (check-config calls it);
// a remote Nagios is not contacted.
func (c *Collector) Check() error {
	if c.statusFile == "" {
		return nil
	}
	_, _, _, err := c.readFile()
	return err
}
