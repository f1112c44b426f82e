package oslo

import (
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/openstack-synchronizer/synchronizer/entity"
)

// Nova notification formats a Mapper accepts for instances (Options.NovaFormat).
const (
	// NovaAuto maps legacy compute.instance.* notifications until the first
	// versioned instance.* one arrives and ignores legacy ones from then on,
	// so that Nova's notification_format=both does not produce every change
	// twice with two different data shapes.
	NovaAuto = "auto"
	// NovaVersioned maps only versioned instance.* notifications.
	NovaVersioned = "versioned"
	// NovaUnversioned maps only legacy compute.instance.* notifications.
	NovaUnversioned = "unversioned"
	// NovaBoth maps both.
	NovaBoth = "both"
)

// Options configure a Mapper. The zero value is usable.
type Options struct {
	// Source is put in Entity.Source of every event: the owner whose
	// entities the events update ("" lets the engine use the listener name).
	Source string
	// DefaultZone is the availability zone of a compute host whose
	// service.update carries none (Nova's default_availability_zone);
	// default "nova".
	DefaultZone string
	// ServiceDownTime is Nova's service_down_time: a compute service whose
	// last_seen_up is older than this at the notification's time is "down";
	// default 60s.
	ServiceDownTime time.Duration
	// NovaFormat is NovaAuto (default), NovaVersioned, NovaUnversioned or
	// NovaBoth.
	NovaFormat string
}

// Mapper turns notifications into events. It is safe for concurrent use.
// The same notification always maps to the same events (nothing depends on
// the clock), so a redelivered message re-applies identical content.
type Mapper struct {
	opts         Options
	sawVersioned atomic.Bool
}

// NewMapper returns a Mapper, or an error naming a bad option.
func NewMapper(o Options) (*Mapper, error) {
	if o.DefaultZone == "" {
		o.DefaultZone = "nova"
	}
	if o.ServiceDownTime == 0 {
		o.ServiceDownTime = 60 * time.Second
	}
	switch o.NovaFormat {
	case "":
		o.NovaFormat = NovaAuto
	case NovaAuto, NovaVersioned, NovaUnversioned, NovaBoth:
	default:
		return nil, fmt.Errorf("nova_format: must be auto, versioned, unversioned or both, not %q", o.NovaFormat)
	}
	if o.ServiceDownTime < 0 {
		return nil, fmt.Errorf("service_down_time: must be > 0")
	}
	return &Mapper{opts: o}, nil
}

// Map returns the events of one notification. An empty result with a nil
// error means the notification is understood but carries no entity change
// for us (a ".start" of a Neutron request, a non-compute Nova service, a
// legacy Nova event while versioned ones are used). Errors wrap one of the
// package's sentinels (see Kind).
func (m *Mapper) Map(n *Notification) ([]entity.Event, error) {
	et := n.EventType
	var (
		evs []entity.Event
		err error
	)
	switch {
	case strings.HasPrefix(et, "instance."):
		evs, err = m.novaInstance(n)
	case strings.HasPrefix(et, "compute.instance."):
		evs, err = m.novaLegacyInstance(n)
	case strings.HasPrefix(et, "service."):
		evs, err = m.novaService(n)
	case strings.HasPrefix(et, "network."):
		evs, err = m.neutron(n, "network")
	case strings.HasPrefix(et, "port."):
		evs, err = m.neutron(n, "port")
	case strings.HasPrefix(et, "volume."):
		evs, err = m.cinderVolume(n)
	case strings.HasPrefix(et, "orchestration.stack."):
		evs, err = m.heatStack(n)
	default:
		return nil, fmt.Errorf("oslo: %q: %w", et, ErrUnknownEventType)
	}
	if err != nil {
		return nil, fmt.Errorf("oslo: %s: %w", et, err)
	}
	return evs, nil
}

// Types returns the entity types Map produces, sorted: the collectors that
// poll these types are the ones that can make up for notifications a
// listener missed.
func (m *Mapper) Types() []string {
	return []string{entity.TypeVolume, entity.TypeStack, entity.TypeNetwork, entity.TypePort, entity.TypeHost, entity.TypeInstance}
}

// payloadObject decodes the payload as a JSON object.
func payloadObject(n *Notification) (map[string]any, error) {
	p, ok := n.Payload.(map[string]any)
	if !ok || p == nil {
		return nil, fmt.Errorf("payload is not an object: %w", ErrBadPayload)
	}
	return p, nil
}

// event builds one event; a ".delete.end" event type deletes.
func (m *Mapper) event(n *Notification, typ, id string, fill func(e *entity.Entity)) entity.Event {
	e := entity.Entity{
		Key:       entity.MakeKey(typ, id),
		Type:      typ,
		ID:        id,
		Timestamp: n.Timestamp,
		Source:    m.opts.Source,
	}
	if fill != nil {
		fill(&e)
	}
	e.Data = scrub(e.Data)
	action := entity.Update
	if strings.HasSuffix(n.EventType, ".delete.end") {
		action = entity.Delete
	}
	return entity.Event{Action: action, Entity: e}
}

// str returns m[k] as a string: "" when absent, null or not a string.
func str(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}

// required returns m[k] as a non-empty string or an ErrBadPayload.
func required(m map[string]any, k string) (string, error) {
	s := str(m, k)
	if s == "" {
		return "", fmt.Errorf("no %q: %w", k, ErrBadPayload)
	}
	return s, nil
}

// withID returns the payload object get reads from n and the object's
// required key k, the entity's id.
func withID(n *Notification, get func(*Notification) (map[string]any, error), k string) (map[string]any, string, error) {
	p, err := get(n)
	if err != nil {
		return nil, "", err
	}
	id, err := required(p, k)
	return p, id, err
}

// parentKey returns typ:id, or "" when id is empty (an unscheduled server).
func parentKey(typ, id string) string {
	if id == "" {
		return ""
	}
	return entity.MakeKey(typ, id)
}
