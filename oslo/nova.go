package oslo

import (
	"fmt"
	"time"

	"github.com/openstack-synchronizer/synchronizer/entity"
)

// unwrapNova replaces every {"nova_object.name": ..., "nova_object.data": {...}}
// wrapper (versioned payloads and all objects nested in them) by its data.
func unwrapNova(v any) any {
	switch t := v.(type) {
	case map[string]any:
		if d, ok := t["nova_object.data"].(map[string]any); ok {
			return unwrapNova(d)
		}
		out := make(map[string]any, len(t))
		for k, x := range t {
			out[k] = unwrapNova(x)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, x := range t {
			out[i] = unwrapNova(x)
		}
		return out
	default:
		return v
	}
}

// versionedData returns the unwrapped payload of a versioned notification.
func versionedData(n *Notification) (map[string]any, error) {
	p, err := payloadObject(n)
	if err != nil {
		return nil, err
	}
	if _, ok := p["nova_object.data"].(map[string]any); !ok {
		return nil, fmt.Errorf("no nova_object.data: %w", ErrBadPayload)
	}
	return unwrapNova(p).(map[string]any), nil
}

// novaInstance maps a versioned instance.* notification (InstancePayload
// and its subclasses: uuid, display_name, state, task_state, host, tenant_id).
func (m *Mapper) novaInstance(n *Notification) ([]entity.Event, error) {
	if m.opts.NovaFormat == NovaUnversioned {
		return nil, nil
	}
	d, id, err := withID(n, versionedData, "uuid")
	if err != nil {
		return nil, err
	}
	m.sawVersioned.Store(true)
	return m.instanceEvent(n, id, d, "task_state"), nil
}

// instanceEvent is the event of an instance notification of either format:
// they name the same fields, but for the task state's (taskKey).
func (m *Mapper) instanceEvent(n *Notification, id string, p map[string]any, taskKey string) []entity.Event {
	ev := m.event(n, entity.TypeInstance, id, func(e *entity.Entity) {
		e.Name = str(p, "display_name")
		e.State = NovaStatus(str(p, "state"), str(p, taskKey))
		e.Project = str(p, "tenant_id")
		e.ParentKey = parentKey(entity.TypeHost, str(p, "host"))
		e.Data = p
	})
	goneIsDelete(&ev)
	return []entity.Event{ev}
}

// goneIsDelete makes an instance notification whose state says the server
// is gone a delete, as a poll's DELETED / SOFT_DELETED row is: Nova sends
// instance.update with state deleted around instance.delete.end, and one
// that arrives after the delete must not bring the server back.
func goneIsDelete(ev *entity.Event) {
	if s := ev.Entity.State; s == "DELETED" || s == "SOFT_DELETED" {
		ev.Action = entity.Delete
	}
}

// novaLegacyInstance maps a legacy compute.instance.* notification (flat
// payload of nova.notifications.base.info_from_instance: instance_id,
// display_name, state = vm_state, state_description = task_state or "").
func (m *Mapper) novaLegacyInstance(n *Notification) ([]entity.Event, error) {
	switch m.opts.NovaFormat {
	case NovaVersioned:
		return nil, nil
	case NovaAuto:
		if m.sawVersioned.Load() {
			return nil, nil
		}
	}
	p, id, err := withID(n, payloadObject, "instance_id")
	if err != nil {
		return nil, err
	}
	return m.instanceEvent(n, id, p, "state_description"), nil
}

// novaService maps service.create/update/delete (ServiceStatusPayload) of
// nova-compute services to nova.host; other binaries are no host entities.
func (m *Mapper) novaService(n *Notification) ([]entity.Event, error) {
	d, host, err := withID(n, versionedData, "host")
	if err != nil {
		return nil, err
	}
	bin, err := required(d, "binary")
	if err != nil {
		return nil, err
	}
	if bin != "nova-compute" {
		return nil, nil
	}
	zone := str(d, "availability_zone")
	if zone == "" {
		zone = m.opts.DefaultZone
	}
	ev := m.event(n, entity.TypeHost, host, func(e *entity.Entity) {
		e.Name = host
		e.State = m.serviceState(n.Timestamp, d)
		e.ParentKey = entity.MakeKey(entity.TypeZone, zone)
		e.Data = d
	})
	if n.EventType == "service.delete" {
		ev.Action = entity.Delete
	}
	return []entity.Event{ev}, nil
}

// serviceState is Nova's servicegroup answer at the notification's time:
// "down" when forced down or when the last heartbeat is older than
// service_down_time (the DB driver's is_up), "up" otherwise. A service
// that never reported (no last_seen_up) was just created, as Nova then
// compares with created_at, and counts as up.
func (m *Mapper) serviceState(at time.Time, d map[string]any) string {
	if fd, _ := d["forced_down"].(bool); fd {
		return "down"
	}
	seen := str(d, "last_seen_up")
	if seen == "" || at.IsZero() {
		return "up"
	}
	t, err := ParseTime(seen)
	if err != nil {
		return "up"
	}
	if el := at.Sub(t); el > m.opts.ServiceDownTime || -el > m.opts.ServiceDownTime {
		return "down"
	}
	return "up"
}
