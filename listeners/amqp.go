package listeners

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/openstack-synchronizer/synchronizer/backoff"
	"github.com/openstack-synchronizer/synchronizer/capool"
	"github.com/openstack-synchronizer/synchronizer/config"
	"github.com/openstack-synchronizer/synchronizer/oslo"
)

func init() {
	Register("amqp", newAMQP)
}

// amqpConfig is the config entry of an amqp listener. oslo/README.md
// documents every key.
type amqpConfig struct {
	Name       string `yaml:"name"`
	Type       string `yaml:"type"`
	AMQPBroker `yaml:",inline"`
	Exchanges  []string `yaml:"exchanges"`
	Topics     []string `yaml:"topics"`
	Priorities []string `yaml:"priorities"`
	Queue      string   `yaml:"queue"`
	// Durable must equal the deployment's amqp_durable_queues (or
	// rabbit_quorum_queue): it is used for the exchanges, which oslo
	// declares too. Our queue's durability is QueueDurable: the queue is
	// ours alone, and a durable one keeps its messages across a broker
	// restart whatever the deployment chose for its own queues.
	Durable      bool `yaml:"durable"`
	QueueDurable bool `yaml:"queue_durable"`
	// AutoDelete must equal the deployment's amqp_auto_delete (exchanges).
	AutoDelete         bool            `yaml:"auto_delete"`
	QueueExpires       config.Duration `yaml:"queue_expires"`
	QueueMaxLength     int             `yaml:"queue_max_length"`
	ConsumerCheck      config.Duration `yaml:"consumer_check"`
	DeadLetterExchange string          `yaml:"dead_letter_exchange"`
	Owner              string          `yaml:"owner"`
	Prefetch           int             `yaml:"prefetch"`
	BatchSize          int             `yaml:"batch_size"`
	BatchWait          config.Duration `yaml:"batch_wait"`
	NovaFormat         string          `yaml:"nova_format"`
	DefaultZone        string          `yaml:"default_availability_zone"`
	ServiceDownTime    config.Duration `yaml:"service_down_time"`
}

type amqpTLS struct {
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	ServerName         string `yaml:"server_name"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// amqpListener consumes oslo.messaging notifications from RabbitMQ. See
// Run for the delivery guarantees.
type amqpListener struct {
	cfg    amqpConfig
	urls   []string // amqp:// or amqps://, credentials inside: never logged
	hosts  []string // host:port of each URL, for logs and status
	tls    *tls.Config
	mapper *oslo.Mapper
	owner  string // the owner setting: the collector our events update
	dir    string // the config's directory: relative paths are in it
	log    *slog.Logger
	st     amqpStats
	limit  logLimiter
}

func newAMQP(s Settings) (Listener, error) {
	c := amqpConfig{
		AMQPBroker: DefaultAMQPBroker(),
		Exchanges:  []string{"nova", "neutron", "cinder", "heat", "openstack"},
		Topics:     []string{"notifications", "versioned_notifications"},
		Priorities: []string{"info"},
		Prefetch:   1000,
		BatchSize:  500,
		// A durable queue of our own survives a broker restart with its
		// (persistent) messages; it expires a day after its sidecar went
		// away, and is bounded meanwhile.
		QueueDurable:   true,
		QueueExpires:   config.Duration(24 * time.Hour),
		QueueMaxLength: 1_000_000,
		ConsumerCheck:  config.Duration(30 * time.Second),
	}
	if err := config.DecodeStrict(s.Node, &c); err != nil {
		return nil, fmt.Errorf("amqp %s: %w", s.Name, err)
	}
	c.Name = s.Name
	if c.Queue == "" {
		// One queue per sidecar: two sidecars sharing one would each get
		// part of the notifications.
		c.Queue = "synchronizer." + s.Name + "." + Instance(s.Database)
	}
	source := c.Owner
	if source == "" {
		source = s.Name
	}
	mapper, err := oslo.NewMapper(oslo.Options{
		Source:          source,
		DefaultZone:     c.DefaultZone,
		ServiceDownTime: c.ServiceDownTime.D(),
		NovaFormat:      c.NovaFormat,
	})
	if err != nil {
		return nil, fmt.Errorf("amqp %s: %w", s.Name, err)
	}
	l := &amqpListener{cfg: c, mapper: mapper, owner: c.Owner, log: s.Logger, dir: s.Dir}
	if l.log == nil {
		l.log = slog.Default()
	}
	if err := l.validate(s.Dir); err != nil {
		return nil, fmt.Errorf("amqp %s: %w", s.Name, err)
	}
	l.st.bad = map[string]int64{}
	l.st.state = "stopped"
	return l, nil
}

func (l *amqpListener) validate(dir string) error {
	c := &l.cfg
	var errs []error
	if len(c.URLs) == 0 {
		errs = append(errs, errors.New("urls: at least one broker URL is required"))
	}
	var err error
	if l.urls, l.hosts, l.tls, err = AMQPEndpoints(c.URLs, c.TLS, dir); err != nil {
		errs = append(errs, err)
	}
	for field, list := range map[string][]string{"exchanges": c.Exchanges, "topics": c.Topics, "priorities": c.Priorities} {
		if len(list) == 0 {
			errs = append(errs, fmt.Errorf("%s: must not be empty", field))
		}
	}
	for _, p := range c.Priorities {
		switch p {
		case "audit", "debug", "info", "warn", "error", "critical", "sample":
		default:
			errs = append(errs, fmt.Errorf("priorities: %q is not an oslo priority (audit, debug, info, warn, error, critical, sample)", p))
		}
	}
	if c.Prefetch < 1 || c.BatchSize < 1 {
		errs = append(errs, errors.New("prefetch and batch_size: must be > 0"))
	}
	if c.BatchWait < 0 || c.MinBackoff <= 0 || c.MaxBackoff < c.MinBackoff {
		errs = append(errs, errors.New("batch_wait >= 0, 0 < min_backoff <= max_backoff required"))
	}
	if c.QueueExpires < 0 || c.QueueExpires > 0 && c.QueueExpires.D() < time.Second {
		errs = append(errs, errors.New("queue_expires: 0 (never) or at least 1s"))
	}
	if c.QueueMaxLength < 0 {
		errs = append(errs, errors.New("queue_max_length: must be >= 0 (0: no bound)"))
	}
	if c.ConsumerCheck < config.Duration(100*time.Millisecond) {
		errs = append(errs, errors.New("consumer_check: at least 100ms"))
	}
	if len(c.Queue) > 255 {
		errs = append(errs, fmt.Errorf("queue: %d bytes, RabbitMQ allows 255", len(c.Queue)))
	}
	return errors.Join(errs...)
}

// splitHosts expands oslo's multi-host form
// "rabbit://u:p@h1:5672,u:p@h2:5672/vhost" into one URL per host.
func splitHosts(raw string) []string {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return []string{raw}
	}
	hosts, path := rest, ""
	if i := strings.Index(rest, "/"); i >= 0 {
		hosts, path = rest[:i], rest[i:]
	}
	var out []string
	for _, h := range strings.Split(hosts, ",") {
		out = append(out, scheme+"://"+h+path)
	}
	return out
}

// normalizeURL maps oslo's rabbit:// scheme to amqp(s):// and returns the
// URL and its host:port. Errors never contain the credentials.
func normalizeURL(raw string, useTLS bool) (string, string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", errors.New("not a URL (amqp://user:password@host:port/vhost)")
	}
	switch u.Scheme {
	case "rabbit":
		u.Scheme = "amqp"
		if useTLS {
			u.Scheme = "amqps"
		}
	case "amqp":
		if useTLS {
			return "", "", fmt.Errorf("%s: tls is set but the scheme is amqp://; use amqps://", u.Host)
		}
	case "amqps":
	default:
		return "", "", fmt.Errorf("%s: scheme %q: use amqp://, amqps:// or rabbit://", u.Host, u.Scheme)
	}
	if _, err := amqp.ParseURI(u.String()); err != nil {
		return "", "", fmt.Errorf("%s: not a valid AMQP URI", u.Host)
	}
	return u.String(), u.Host, nil
}

// Files lists the TLS files the listener read when it was built: the
// sidecar rebuilds it when one is edited (a renewed certificate).
func (l *amqpListener) Files() []string {
	t := l.cfg.TLS
	if t == nil {
		return nil
	}
	var out []string
	for _, f := range []string{t.CAFile, t.CertFile, t.KeyFile} {
		if f != "" {
			out = append(out, absIn(l.dir, f))
		}
	}
	return out
}

// absIn resolves a relative path against the config's directory.
func absIn(dir, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

func loadTLS(t *amqpTLS, dir string) (*tls.Config, error) {
	abs := func(p string) string { return absIn(dir, p) }
	tc := &tls.Config{ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
	if t.CAFile != "" {
		pool, err := capool.Load(abs(t.CAFile))
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		tc.RootCAs = pool
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return nil, errors.New("cert_file and key_file go together")
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(abs(t.CertFile), abs(t.KeyFile))
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// errFatal marks errors that a reconnect cannot fix (the broker refused our
// declarations): Run returns them instead of retrying.
var errFatal = errors.New("configuration does not match the broker")

// Run consumes until ctx ends. Messages are acknowledged only after
// sink.Apply returned nil for their events; on a sink error they are given
// back to the broker (redelivered later) after a back-off. Lost connections
// are re-established with capped exponential back-off, trying the broker
// URLs in turn. Run returns nil when ctx ends and an error only when the
// broker refuses the declarations (durable/auto_delete/arguments differ from
// the existing exchanges or queue, missing dead-letter exchange, no
// permission): retrying would fail the same way.
func (l *amqpListener) Run(ctx context.Context, sink Sink) error {
	retry := backoff.New(l.cfg.MinBackoff.D(), l.cfg.MaxBackoff.D())
	// Before the first session consumes, nothing was listening: the
	// collectors catch up once it does. After a lost connection: a
	// non-durable queue may have gone with a broker restart (a queue found
	// missing is caught up in any case), and a restart takes non-durable
	// exchanges with our queue's bindings: the services declare the
	// exchanges again when they publish, before we bind again, and what
	// they publish meanwhile reaches no queue of ours. Only a durable
	// queue bound to durable exchanges keeps everything.
	gap := "first_connect"
	reconnectGap := ""
	switch {
	case !l.cfg.QueueDurable:
		reconnectGap = "reconnect_non_durable_queue"
	case !l.cfg.Durable:
		reconnectGap = "reconnect_non_durable_exchanges"
	}
	for attempt := 0; ; attempt++ {
		i := attempt % len(l.urls)
		l.setState("connecting", l.hosts[i], nil)
		began := time.Now()
		consumed, err := l.session(ctx, sink, i, &gap)
		if consumed {
			gap = reconnectGap
		}
		if ctx.Err() != nil {
			l.setState("stopped", "", nil)
			return nil
		}
		if errors.Is(err, errFatal) {
			l.setState("failed", l.hosts[i], err)
			l.log.Error("amqp listener stopped", "broker", l.hosts[i], "err", err)
			return err
		}
		l.setState("reconnecting", l.hosts[i], err)
		l.st.add(&l.st.reconnects, 1)
		what := connectProblem(err, consumed)
		if !consumed {
			l.setDown(what + ": " + err.Error())
		}
		// A broker that accepts and then drops us at once is not "back":
		// only a session that lasted resets the back-off.
		if consumed && time.Since(began) > 10*time.Second {
			retry.Reset()
		}
		wait := retry.Next()
		l.limit.log(l.log, "connection", slog.LevelWarn, "amqp "+what+", reconnecting",
			"broker", l.hosts[i], "retry_in", wait, "err", err)
		if !backoff.Wait(ctx, wait) {
			l.setState("stopped", "", nil)
			return nil
		}
	}
}

// connectProblem names what failed, for the log and for Down: an operator
// fixes a refused password and an unreachable broker differently, and
// neither is a lost connection.
func connectProblem(err error, consumed bool) string {
	var ae *amqp.Error
	switch {
	case errors.As(err, &ae) && ae.Code == amqp.AccessRefused:
		return "authentication refused"
	case errors.As(err, &ae) && ae.Code == amqp.NotAllowed:
		return "access to the vhost refused"
	case consumed:
		return "connection lost"
	default:
		return "cannot connect"
	}
}

// Down implements listeners.HealthReporter: the listener is down from a
// failed connection attempt until it consumes again.
func (l *amqpListener) Down() string {
	l.st.mu.Lock()
	defer l.st.mu.Unlock()
	return l.st.down
}

func (l *amqpListener) setDown(why string) {
	l.st.mu.Lock()
	l.st.down = why
	l.st.mu.Unlock()
}

// Status implements StatusReporter.
func (l *amqpListener) Status() Status {
	st := l.st.snapshot(l.cfg.Queue)
	st.QueueDurable = l.cfg.QueueDurable
	return st
}

var (
	_ Listener       = (*amqpListener)(nil)
	_ StatusReporter = (*amqpListener)(nil)
	_ FileReader     = (*amqpListener)(nil)
)
