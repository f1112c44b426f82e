// Package config owns the synchronizer's configuration file: defaults, strict
// parsing, validation with errors that name the field and line, and the
// embedded default used when no file is given.
package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("invalid configuration")

// Retention bounds the change log. A change is pruned when it is beyond
// Count newest changes or older than Age; zero disables that bound.
type Retention struct {
	Count int64    `yaml:"count"`
	Age   Duration `yaml:"age"`
}

// Metrics configures the optional Prometheus endpoint.
type Metrics struct {
	Listen string `yaml:"listen"` // loopback host:port; empty disables
}

// Log configures logging.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text or json
}

// Config is a whole configuration file.
type Config struct {
	Socket            string    `yaml:"socket"`
	SocketMode        string    `yaml:"socket_mode"`
	Database          string    `yaml:"database"`
	Sync              string    `yaml:"sync"` // SQLite synchronous: full (default) or normal
	ActiveEntityTypes []string  `yaml:"active_entity_types"`
	ChangesRetention  Retention `yaml:"changes_retention"`
	// SocketGroup is the group the socket is given (name or gid), so that
	// a consumer's user in that group can connect; socket_mode then
	// defaults to 0660.
	SocketGroup string `yaml:"socket_group"`
	// SubscriberQueue is how many changes may wait for one subscriber before
	// it is cut off with a resync notification.
	SubscriberQueue int `yaml:"subscriber_queue"`
	// NotifyBatch is the most changes sent in one notification.
	NotifyBatch int `yaml:"notify_batch"`
	// WriteTimeout ends a connection whose peer stops reading.
	WriteTimeout Duration `yaml:"write_timeout"`
	// QuickCheckInterval is how often PRAGMA quick_check runs over the
	// database (it also runs at every start).
	QuickCheckInterval Duration `yaml:"quick_check_interval"`
	// MaxConnections bounds open socket connections: past it a new one gets
	// an error line and is closed.
	MaxConnections int `yaml:"max_connections"`
	// IdleTimeout closes a connection with no subscription that sends no
	// request for this long.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// MaxSubscriptions bounds the subscriptions of one connection.
	MaxSubscriptions int `yaml:"max_subscriptions"`
	// SubscriberMemory bounds, in bytes, the changes queued for all
	// subscribers together; past it the one with the most queued gets
	// resync.
	SubscriberMemory int64 `yaml:"subscriber_memory"`
	// RequestMemory bounds, in bytes, the request lines read and not yet
	// answered, over all connections.
	RequestMemory int64 `yaml:"request_memory"`
	// GetAllTimeout bounds how long one get_all answer may take (and hold
	// its database snapshot).
	GetAllTimeout Duration `yaml:"get_all_timeout"`
	// RemovedCollector says what happens to the entities of a collector that
	// disappears from the config on reload: "keep" (default) or "delete".
	RemovedCollector string      `yaml:"removed_collector"`
	Metrics          Metrics     `yaml:"metrics"`
	Log              Log         `yaml:"log"`
	Collectors       []Collector `yaml:"-"`
	Listeners        []Listener  `yaml:"-"`
	Publishers       []Publisher `yaml:"-"`

	// Path is the file the config was read from ("" for the embedded one),
	// Dir the directory relative paths are resolved against.
	Path string `yaml:"-"`
	Dir  string `yaml:"-"`
	// Hash is the SHA-256 of the file's bytes, hex.
	Hash string `yaml:"-"`

	// root is the parsed document, kept to name the line of a setting in
	// validation errors.
	root *yaml.Node
}

// Common holds the settings every collector has. Collector-specific settings
// structs embed it with `yaml:",inline"` so that strict decoding accepts them.
type Common struct {
	Name     string   `yaml:"name"`
	Type     string   `yaml:"type"`
	Interval Duration `yaml:"interval"`
	// Jitter shifts the collector's polls, once, by a random share of up
	// to Jitter of the interval (0.1 = 10%), so that many collectors do
	// not poll in step; polls then start an interval apart.
	Jitter  float64  `yaml:"jitter"`
	Timeout Duration `yaml:"timeout"`
	// MaxBackoff caps the exponential back-off after failed polls.
	MaxBackoff Duration `yaml:"max_backoff"`
	// VolatileFields names, per entity type, the data fields that change
	// without meaning a change: they are dropped before hashing. A dotted
	// name reaches into nested objects ("flavor.extra_specs"); "*" matches
	// every member or element ("hypervisors.*.uptime").
	VolatileFields map[string][]string `yaml:"volatile_fields"`
	// MaxDeleteRatio holds back a complete listing that would delete more
	// than this share of a type's entities (0 disables; default 0.5).
	MaxDeleteRatio *float64 `yaml:"max_delete_ratio"`
}

// Collector is one entry of collectors:. Node keeps the whole entry so that
// the collector type can decode its own keys strictly.
type Collector struct {
	Common `yaml:",inline"`
	Node   *yaml.Node `yaml:"-"`
}

// Publisher is one entry of publishers: (the change log sent elsewhere,
// publishers/README.md).
type Publisher struct {
	Name string     `yaml:"name"`
	Type string     `yaml:"type"`
	Node *yaml.Node `yaml:"-"`
}

// Listener is one entry of listeners:.
type Listener struct {
	Name string     `yaml:"name"`
	Type string     `yaml:"type"`
	Node *yaml.Node `yaml:"-"`
}

// Defaults applied to fields left empty.
const (
	DefaultInterval   = 30 * time.Second
	DefaultMaxBackoff = 5 * time.Minute
	// MinDefaultTimeout is the least default timeout of a poll (the
	// default is 9/10 of the interval).
	MinDefaultTimeout      = 10 * time.Second
	DefaultSubscriberQueue = 100000
	DefaultNotifyBatch     = 1000
	DefaultWriteTimeout    = 30 * time.Second
	DefaultQuickCheck      = 6 * time.Hour
	DefaultMaxDeleteRatio  = 0.5

	DefaultMaxConnections   = 1024
	DefaultIdleTimeout      = 10 * time.Minute
	DefaultMaxSubscriptions = 16
	DefaultSubscriberMemory = 256 << 20
	DefaultRequestMemory    = 64 << 20
	DefaultGetAllTimeout    = time.Minute
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// Load reads and validates a config file.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(b, abs)
}

// Parse parses and validates config bytes; path names the file in errors and
// sets the directory relative paths are resolved against.
func Parse(b []byte, path string) (*Config, error) {
	c := &Config{Path: path, Dir: filepath.Dir(path)}
	sum := sha256.Sum256(b)
	c.Hash = hex.EncodeToString(sum[:])

	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w: %v", path, ErrInvalid, SyntaxError(b, err))
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var raw struct {
		Config     `yaml:",inline"`
		Collectors []yaml.Node `yaml:"collectors"`
		Listeners  []yaml.Node `yaml:"listeners"`
		Publishers []yaml.Node `yaml:"publishers"`
	}
	if err := dec.Decode(&raw); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %w: %s", path, ErrInvalid, yamlError(err))
	}
	raw.Config.Path, raw.Config.Dir, raw.Config.Hash = c.Path, c.Dir, c.Hash
	*c = raw.Config
	if len(doc.Content) > 0 {
		c.root = doc.Content[0]
	}
	var err error
	if c.Collectors, err = decodeSection(path, "collectors", raw.Collectors, func(e *Collector, n *yaml.Node) { e.Node = n }); err != nil {
		return nil, err
	}
	if c.Listeners, err = decodeSection(path, "listeners", raw.Listeners, func(e *Listener, n *yaml.Node) { e.Node = n }); err != nil {
		return nil, err
	}
	if c.Publishers, err = decodeSection(path, "publishers", raw.Publishers, func(e *Publisher, n *yaml.Node) { e.Node = n }); err != nil {
		return nil, err
	}
	c.applyDefaults()
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// decodeSection decodes the common keys of each entry of a section
// (collectors, listeners, publishers) and keeps the entry's node: its type
// decodes the rest, strictly, when it is built.
func decodeSection[T any](path, section string, nodes []yaml.Node, keep func(*T, *yaml.Node)) ([]T, error) {
	var out []T
	for i := range nodes {
		var e T
		if err := nodes[i].Decode(&e); err != nil {
			return nil, fmt.Errorf("%s: %w: %s[%d]: %s", path, ErrInvalid, section, i, yamlError(err))
		}
		keep(&e, &nodes[i])
		out = append(out, e)
	}
	return out, nil
}

// setDefault sets *v to def when it is left empty (the zero value).
func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

func (c *Config) applyDefaults() {
	setDefault(&c.Socket, "var/synchronizer.sock")
	if c.SocketMode == "" {
		c.SocketMode = "0600"
		if c.SocketGroup != "" {
			c.SocketMode = "0660"
		}
	}
	setDefault(&c.Database, "var/synchronizer.db")
	setDefault(&c.Sync, "full")
	if c.ChangesRetention.Count == 0 && c.ChangesRetention.Age == 0 {
		c.ChangesRetention = Retention{Count: 1000000, Age: Duration(168 * time.Hour)}
	}
	setDefault(&c.SubscriberQueue, DefaultSubscriberQueue)
	setDefault(&c.NotifyBatch, DefaultNotifyBatch)
	setDefault(&c.WriteTimeout, Duration(DefaultWriteTimeout))
	setDefault(&c.QuickCheckInterval, Duration(DefaultQuickCheck))
	setDefault(&c.MaxConnections, DefaultMaxConnections)
	setDefault(&c.IdleTimeout, Duration(DefaultIdleTimeout))
	setDefault(&c.MaxSubscriptions, DefaultMaxSubscriptions)
	setDefault(&c.SubscriberMemory, DefaultSubscriberMemory)
	setDefault(&c.RequestMemory, DefaultRequestMemory)
	setDefault(&c.GetAllTimeout, Duration(DefaultGetAllTimeout))
	setDefault(&c.RemovedCollector, "keep")
	setDefault(&c.Log.Level, "info")
	setDefault(&c.Log.Format, "text")
	for i := range c.Collectors {
		cc := &c.Collectors[i].Common
		setDefault(&cc.Interval, Duration(DefaultInterval))
		if cc.Timeout == 0 {
			// A poll may take most of its interval, and never less than
			// a real API needs under load (a token, then pages of 1-2 s
			// each): a shorter one fails polls that were merely slow,
			// and the next poll starts late anyway.
			cc.Timeout = Duration(max(cc.Interval.D()*9/10, MinDefaultTimeout))
		}
		setDefault(&cc.MaxBackoff, Duration(DefaultMaxBackoff))
		if cc.MaxDeleteRatio == nil {
			r := DefaultMaxDeleteRatio
			cc.MaxDeleteRatio = &r
		}
	}
}

func (c *Config) validate() error {
	var errs []error
	bad := func(line int, field, format string, a ...any) {
		msg := fmt.Sprintf(format, a...)
		if line > 0 {
			errs = append(errs, fmt.Errorf("%w: line %d: %s: %s", ErrInvalid, line, field, msg))
			return
		}
		errs = append(errs, fmt.Errorf("%w: %s: %s", ErrInvalid, field, msg))
	}
	if _, err := c.FileMode(); err != nil {
		bad(c.line("socket_mode"), "socket_mode", "%v", err)
	}
	if c.SocketGroup != "" {
		if _, err := c.SocketGID(); err != nil {
			bad(c.line("socket_group"), "socket_group", "%v", err)
		}
	}
	if c.Sync != "full" && c.Sync != "normal" {
		bad(c.line("sync"), "sync", "must be full or normal, not %q", c.Sync)
	}
	if c.ChangesRetention.Count < 0 || c.ChangesRetention.Age < 0 {
		bad(c.line("changes_retention"), "changes_retention", "must not be negative")
	}
	if c.SubscriberQueue < 1 {
		bad(c.line("subscriber_queue"), "subscriber_queue", "must be > 0")
	}
	if c.NotifyBatch < 1 {
		bad(c.line("notify_batch"), "notify_batch", "must be > 0")
	}
	if c.QuickCheckInterval < Duration(time.Minute) {
		bad(c.line("quick_check_interval"), "quick_check_interval", "must be at least 1m")
	}
	for _, f := range []struct {
		name string
		bad  bool
	}{
		{"max_connections", c.MaxConnections < 1},
		{"idle_timeout", c.IdleTimeout < 0},
		{"max_subscriptions", c.MaxSubscriptions < 1},
		{"subscriber_memory", c.SubscriberMemory < 1},
		{"request_memory", c.RequestMemory < 1},
		{"get_all_timeout", c.GetAllTimeout < 0},
	} {
		if f.bad {
			bad(c.line(f.name), f.name, "must be > 0")
		}
	}
	if c.RemovedCollector != "keep" && c.RemovedCollector != "delete" {
		bad(c.line("removed_collector"), "removed_collector", "must be keep or delete, not %q", c.RemovedCollector)
	}
	if c.Metrics.Listen != "" {
		if err := checkLoopback(c.Metrics.Listen); err != nil {
			bad(c.line("metrics", "listen"), "metrics.listen", "%v", err)
		}
	}
	switch strings.ToLower(c.Log.Level) {
	case "debug", "info", "warn", "error":
	default:
		bad(c.line("log", "level"), "log.level", "must be debug, info, warn or error, not %q", c.Log.Level)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		bad(c.line("log", "format"), "log.format", "must be text or json, not %q", c.Log.Format)
	}
	for i, t := range c.ActiveEntityTypes {
		if t == "" || strings.Contains(t, ":") {
			bad(c.line("active_entity_types"), fmt.Sprintf("active_entity_types[%d]", i), "%q: must be non-empty and contain no ':'", t)
		}
	}
	// Collectors, listeners and publishers share one namespace: a name is
	// a change's source and a metric's label.
	names := map[string]string{}
	checkName := func(line int, field, name string) {
		switch {
		case name == "":
			bad(line, field+".name", "required")
		case !nameRE.MatchString(name):
			bad(line, field+".name", "%q: use letters, digits, '.', '_' and '-'", name)
		case names[name] != "":
			bad(line, field+".name", "%q is already used by %s", name, names[name])
		default:
			names[name] = field
		}
	}
	// checkUnit checks what every collector, listener and publisher has, and
	// returns where the entry is for its own checks.
	checkUnit := func(section string, i int, n *yaml.Node, name, typ string) (line int, field string) {
		line, field = n.Line, fmt.Sprintf("%s[%d]", section, i)
		checkName(line, field, name)
		if typ == "" {
			bad(line, field+".type", "required")
		}
		return line, field
	}
	for i, col := range c.Collectors {
		line, field := checkUnit("collectors", i, col.Node, col.Name, col.Type)
		if col.Interval.D() < 100*time.Millisecond {
			bad(line, field+".interval", "must be at least 100ms, not %s", col.Interval.D())
		}
		if col.Timeout.D() <= 0 {
			bad(line, field+".timeout", "must be > 0")
		}
		if col.Jitter < 0 || col.Jitter > 1 {
			bad(line, field+".jitter", "must be between 0 and 1")
		}
		if r := *col.MaxDeleteRatio; r < 0 || r > 1 {
			bad(line, field+".max_delete_ratio", "must be between 0 and 1")
		}
	}
	for i, l := range c.Listeners {
		checkUnit("listeners", i, l.Node, l.Name, l.Type)
	}
	for i, p := range c.Publishers {
		checkUnit("publishers", i, p.Node, p.Name, p.Type)
	}
	return errors.Join(errs...)
}

// FileMode parses socket_mode ("0600").
func (c *Config) FileMode() (os.FileMode, error) {
	m, err := strconv.ParseUint(c.SocketMode, 8, 32)
	if err != nil || m > 0o777 {
		return 0, fmt.Errorf("%q is not an octal file mode such as \"0600\"", c.SocketMode)
	}
	return os.FileMode(m), nil
}

// SocketGID resolves socket_group (a group name or a numeric gid) on this
// machine; -1 when it is not set.
func (c *Config) SocketGID() (int, error) {
	if c.SocketGroup == "" {
		return -1, nil
	}
	if gid, err := strconv.Atoi(c.SocketGroup); err == nil && gid >= 0 {
		return gid, nil
	}
	g, err := user.LookupGroup(c.SocketGroup)
	if err != nil {
		return -1, fmt.Errorf("%q: %v (create the group, or give a numeric gid)", c.SocketGroup, err)
	}
	return strconv.Atoi(g.Gid)
}

// Abs resolves a path from the config against the config's directory.
func (c *Config) Abs(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.Dir, p)
}

// DecodeStrict decodes a collector's or listener's YAML node into v, refusing
// unknown keys with the line they are on. v should embed Common (collectors)
// inline so the common keys are known.
func DecodeStrict(n *yaml.Node, v any) error {
	if n == nil {
		return nil
	}
	if n.Kind == yaml.MappingNode {
		known := map[string]bool{}
		yamlKeys(reflect.TypeOf(v), known)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if !known[k.Value] {
				return fmt.Errorf("line %d: unknown key %q", k.Line, k.Value)
			}
		}
	}
	return n.Decode(v)
}

// yamlKeys collects the YAML keys a struct type accepts, following inline
// fields.
func yamlKeys(t reflect.Type, into map[string]bool) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			yamlKeys(f.Type, into)
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		into[name] = true
	}
}
