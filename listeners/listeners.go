// Package listeners holds the registry of listener types: sources that push
// changes (the OpenStack message bus) instead of being polled. A listener type
// is one file in this package that registers a Factory in init.
package listeners

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"os"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/openstack-synchronizer/synchronizer/entity"
	"github.com/openstack-synchronizer/synchronizer/registry"
)

// Sink receives a listener's events. Apply returns only after the events are
// committed to the baseline (or were found to change nothing), so a listener
// may acknowledge the messages they came from once Apply returns nil. An
// error means nothing was committed: do not acknowledge.
//
// An event's Entity.Source may be left empty (the listener's name is used) or
// set to the name of the collector that polls the same entities, so that push
// and poll update one owner's entities.
type Sink interface {
	Apply(ctx context.Context, events []entity.Event) error
}

// Listener runs until ctx ends, feeding sink. Run returns nil when ctx ended
// and an error when it cannot go on (the supervisor logs it and restarts the
// listener with back-off). Transient problems such as a broker restart are
// the listener's to retry.
type Listener interface {
	Run(ctx context.Context, sink Sink) error
}

// StatusReporter is implemented by listeners with figures for `status`
// (messages, bad messages, connection state). It must not contain secrets.
type StatusReporter interface {
	Status() Status
}

// FileReader is implemented by listeners that read files when they are
// built (certificates): the sidecar watches them, and an edit rebuilds the
// listener as a change of its settings would.
type FileReader interface {
	Files() []string
}

// Status is a listener's figures in `status` (its details). The fields are
// in the order of their JSON names, as the map status once was: the
// encoding is the same byte for byte (testdata/status). Pointers are
// figures that are absent, rather than zero, until known.
type Status struct {
	Acked          int64            `json:"acked"`
	ApplyErrors    int64            `json:"apply_errors"`
	Bad            map[string]int64 `json:"bad"`
	BadTotal       int64            `json:"bad_total"`
	Batches        int64            `json:"batches"`
	Broker         string           `json:"broker"`
	DeadLettered   int64            `json:"dead_lettered"`
	Down           string           `json:"down,omitempty"`
	Events         int64            `json:"events"`
	Gaps           int64            `json:"gaps"`
	Ignored        int64            `json:"ignored"`
	LastError      string           `json:"last_error"`
	LastGap        string           `json:"last_gap,omitempty"`
	LastGapAt      time.Time        `json:"last_gap_at,omitzero"`
	LastMessageAt  time.Time        `json:"last_message_at,omitzero"`
	OtherConsumers *int             `json:"other_consumers,omitempty"`
	Queue          string           `json:"queue"`
	QueueCheckedAt time.Time        `json:"queue_checked_at,omitzero"`
	QueueConsumers *int             `json:"queue_consumers,omitempty"`
	QueueDurable   bool             `json:"queue_durable"`
	QueueMessages  *int             `json:"queue_messages,omitempty"`
	Received       int64            `json:"received"`
	Reconnects     int64            `json:"reconnects"`
	Redelivered    int64            `json:"redelivered"`
	// State is the connection state ("connected", ...); "" for a listener
	// without one.
	State      string    `json:"state"`
	StateSince time.Time `json:"state_since"`
	Warning    string    `json:"warning,omitempty"`
}

// HealthReporter is implemented by listeners that can be running yet
// useless: a bus listener whose broker refuses it, or that it cannot reach,
// takes no notification. Down says why (empty while it works); the
// supervisor then shows the listener as failing in status and metrics.
type HealthReporter interface {
	Down() string
}

// Settings is what a factory gets: the listener's name, the YAML node of its
// whole config entry (decode it with config.DecodeStrict into a struct that
// has name and type fields too) and the config file's directory.
type Settings struct {
	Name   string
	Node   *yaml.Node
	Dir    string
	Logger *slog.Logger
	// Database is the absolute path of the sidecar's database: with the
	// host name it tells this sidecar from others on one broker (Instance).
	Database string
}

// CatchUpper is implemented by sinks that can make up for notifications a
// listener may have missed (its queue was new or lost, it was not
// consuming): CatchUp has the collectors that poll the listener's entity
// types poll at once. It must not block. A listener calls it after it
// consumes again, so that the poll starts after the queue is bound and no
// notification falls between the two.
type CatchUpper interface {
	CatchUp(g Gap)
}

// Gap says why a listener may have missed notifications and what they
// were about.
type Gap struct {
	// Reason: queue_created (the queue was new: what was published before
	// is not in it), first_connect, reconnect_non_durable_queue,
	// queue_full (the queue reached its max-length bound and dropped the
	// oldest).
	Reason string
	// Owner is the collector the listener's events update (its owner
	// setting), "" when none is named.
	Owner string
	// Types are the entity types the listener maps notifications to.
	Types []string
}

// Instance names this sidecar among those that share a broker: the host
// name and a short hash of the database's path. Two sidecars on one host
// have different databases, and a database has one sidecar (its lock).
func Instance(database string) string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	// Names of broker objects: keep them plain and bounded.
	host = strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, host)
	if len(host) > 64 {
		host = host[:64]
	}
	sum := sha256.Sum256([]byte(database))
	return host + "." + hex.EncodeToString(sum[:4])
}

// Factory builds a listener from its settings, validating them without
// connecting anywhere (check-config calls factories).
type Factory func(s Settings) (Listener, error)

var factories = registry.New[Factory]("listener")

// Register makes a listener type available under name. It panics when the
// name is taken.
func Register(name string, f Factory) { factories.Register(name, f) }

// Types returns the registered listener types, sorted.
func Types() []string { return factories.Types() }

// New builds a listener of a registered type.
func New(typ string, s Settings) (Listener, error) { return registry.Build(factories, typ, s) }
