package oslo

import (
	"fmt"
	"strings"

	"github.com/openstack-synchronizer/synchronizer/entity"
)

// neutron maps network.* and port.* (resource "network" or "port").
// Neutron's ".end" payloads are {"<resource>": {...as GET /v2.0/...}};
// deletes carry "<resource>_id" (and the object on recent releases).
// ".start" payloads are the request body, not the resource: ignored.
func (m *Mapper) neutron(n *Notification, resource string) ([]entity.Event, error) {
	if strings.HasSuffix(n.EventType, ".start") {
		return nil, nil
	}
	p, err := payloadObject(n)
	if err != nil {
		return nil, err
	}
	typ := entity.TypeNetwork
	if resource == "port" {
		typ = entity.TypePort
	}
	obj, _ := p[resource].(map[string]any)
	if strings.HasSuffix(n.EventType, ".delete.end") {
		id := str(p, resource+"_id")
		if id == "" && obj != nil {
			id = str(obj, "id")
		}
		if id == "" {
			return nil, fmt.Errorf("no %q: %w", resource+"_id", ErrBadPayload)
		}
		ev := m.event(n, typ, id, func(e *entity.Entity) {
			if obj != nil {
				fillNeutron(e, obj, resource)
			}
		})
		return []entity.Event{ev}, nil
	}
	if obj == nil {
		return nil, fmt.Errorf("no %q object: %w", resource, ErrBadPayload)
	}
	id, err := required(obj, "id")
	if err != nil {
		return nil, err
	}
	ev := m.event(n, typ, id, func(e *entity.Entity) { fillNeutron(e, obj, resource) })
	return []entity.Event{ev}, nil
}

func fillNeutron(e *entity.Entity, obj map[string]any, resource string) {
	e.Name = str(obj, "name")
	e.State = str(obj, "status")
	e.Project = str(obj, "project_id")
	if e.Project == "" {
		e.Project = str(obj, "tenant_id")
	}
	e.Data = obj
	if resource != "port" {
		return
	}
	e.ParentKey = parentKey(entity.TypeNetwork, str(obj, "network_id"))
	if dev := str(obj, "device_id"); dev != "" && strings.HasPrefix(str(obj, "device_owner"), "compute:") {
		e.Links = []entity.Link{{Key: entity.MakeKey(entity.TypeInstance, dev), Relation: "attached"}}
	}
}

// cinderVolume maps volume.* (cinder's _usage_from_volume payload:
// volume_id, display_name, status, tenant_id, volume_attachment[]).
func (m *Mapper) cinderVolume(n *Notification) ([]entity.Event, error) {
	p, id, err := withID(n, payloadObject, "volume_id")
	if err != nil {
		return nil, err
	}
	links, data := volumeLinks(p)
	ev := m.event(n, entity.TypeVolume, id, func(e *entity.Entity) {
		e.Name = str(p, "display_name")
		e.State = str(p, "status")
		e.Project = str(p, "tenant_id")
		e.Links = links
		e.Data = data
	})
	return []entity.Event{ev}, nil
}

// volumeLinks returns one "attached" link per attached server, and the
// payload as entity data. Cinder sends its VolumeAttachment objects
// (instance_uuid, attach_status, and the whole volume again, with
// provider_auth: the data leaves that copy out); some recorded samples use
// server_id as the API does. p is not modified.
func volumeLinks(p map[string]any) ([]entity.Link, map[string]any) {
	atts, _ := p["volume_attachment"].([]any)
	var links []entity.Link
	seen := map[string]bool{}
	data := p
	if len(atts) > 0 {
		data = make(map[string]any, len(p))
		for k, v := range p {
			data[k] = v
		}
		data["volume_attachment"] = make([]any, 0, len(atts))
	}
	for _, a := range atts {
		att, ok := a.(map[string]any)
		if !ok {
			data["volume_attachment"] = append(data["volume_attachment"].([]any), a)
			continue
		}
		if _, has := att["volume"]; has {
			c := make(map[string]any, len(att))
			for k, v := range att {
				if k != "volume" {
					c[k] = v
				}
			}
			att = c
		}
		data["volume_attachment"] = append(data["volume_attachment"].([]any), att)
		if str(att, "attach_status") == "detached" {
			continue
		}
		srv := str(att, "server_id")
		if srv == "" {
			srv = str(att, "instance_uuid")
		}
		if srv == "" || seen[srv] {
			continue
		}
		seen[srv] = true
		links = append(links, entity.Link{Key: entity.MakeKey(entity.TypeInstance, srv), Relation: "attached"})
	}
	return links, data
}

// heatStack maps orchestration.stack.* (heat's format_notification_body:
// stack_identity is the stack id, state is "<ACTION>_<STATUS>" as the API's
// stack_status, tenant_id the project).
func (m *Mapper) heatStack(n *Notification) ([]entity.Event, error) {
	p, id, err := withID(n, payloadObject, "stack_identity")
	if err != nil {
		return nil, err
	}
	ev := m.event(n, entity.TypeStack, id, func(e *entity.Entity) {
		e.Name = str(p, "stack_name")
		e.State = str(p, "state")
		e.Project = str(p, "tenant_id")
		e.Data = p
	})
	// The stack's comprised links come from its resource list, which only
	// a poll reads.
	ev.KeepLinks = true
	return []entity.Event{ev}, nil
}
