// Package entity holds the data model every part of the synchronizer shares:
// the entity as docs/contract.md defines it, the changes made of it, and the
// snapshots and events that collectors and listeners hand to the engine.
package entity

import (
	"strings"
	"time"
)

// Actions of a change.
const (
	Create = "create"
	Update = "update"
	Delete = "delete"
)

// Link is an edge other than containment, such as a port attached to an
// instance.
type Link struct {
	Key      string `json:"key"`
	Relation string `json:"relation"`
}

// Entity is one resource or alarm of a source, in the form of the external
// contract. Collectors fill Type, ID, Name, ParentKey, State, Project, Data and
// Links; the engine fills Key (when empty), Source and Timestamp (when zero).
type Entity struct {
	Key       string         `json:"key"`
	Type      string         `json:"type"`
	ID        string         `json:"id"`
	Name      string         `json:"name"`
	ParentKey string         `json:"parent_key"`
	State     string         `json:"state"`
	Project   string         `json:"project"`
	Timestamp time.Time      `json:"timestamp"`
	Source    string         `json:"source"`
	Data      map[string]any `json:"data"`
	Links     []Link         `json:"links,omitempty"`

	// Fingerprint, when not zero, identifies the source bytes a collector
	// built the entity from, and nothing but them: the same fingerprint
	// for the same key means the same entity, and the engine reuses the
	// hashes it computed for it (canonical hashing is the main cost of an
	// unchanged listing). Collectors that merge several sources leave it
	// zero. It is not part of the entity.
	Fingerprint [16]byte `json:"-" yaml:"-"`
}

// MakeKey returns the contract key of an entity: "<type>:<id>".
func MakeKey(typ, id string) string { return typ + ":" + id }

// SplitKey splits a key made by MakeKey. Types contain no colon, ids may.
func SplitKey(key string) (typ, id string) {
	typ, id, _ = strings.Cut(key, ":")
	return typ, id
}

// Change is an entity with its position in the change log and the action
// that produced it. Its JSON form is the entity's fields plus "seq" and
// "action".
type Change struct {
	Seq    int64  `json:"seq"`
	Action string `json:"action"`
	Entity
}

// Snapshot is one poll of a collector.
//
// Types lists the entity types the poll listed completely and successfully:
// only entities of those types that the source owns and that are missing from
// Entities are deleted. Entities of other types are created or updated but
// never cause deletes, so a collector whose listing of one type failed reports
// the others and leaves the failed type out of Types.
type Snapshot struct {
	Types    []string
	Entities []Entity
	// AllTypes says the listing is complete for every type: every entity
	// the source owns that is missing is deleted, whatever its type (a
	// static file or a plugin that reports all it knows).
	AllTypes bool

	// Present are keys the source still has but did not send in Entities
	// (an incremental poll that listed only the ids of a type, and the
	// details of what changed): for a type in Types they count as listed,
	// so they are neither deleted nor changed.
	Present []string
	// Deletes are keys the source reports as deleted (a change listing's
	// DELETED rows), whatever Types says. Like deletes by absence, they
	// remove only entities the source owns and that no push event observed
	// after the poll began; a key also in Entities is not deleted.
	Deletes []string
	// Applied, when set, is called by the poll loop once the engine has
	// committed the snapshot, and never when the poll failed: a collector
	// that lists only the changes since its last poll moves its watermark
	// there, so that a snapshot the engine never applied is listed again.
	Applied func() `json:"-" yaml:"-"`
}

// Event is one pushed change from a listener: Action is Delete to remove the
// entity, anything else (usually Update) to create or update it. An event
// whose Entity.Timestamp is older than the baseline's last observation of the
// key is ignored.
type Event struct {
	Action string
	Entity Entity
	// KeepLinks says the event's source does not know the entity's links
	// (a Heat stack notification lists no resources): the entity keeps
	// the links it has rather than losing them until the next poll.
	KeepLinks bool
}
