package openstack

import (
	"sort"
	"strings"

	"github.com/openstack-synchronizer/synchronizer/entity"
)

// The mappers turn one API object into an entity per the normalization
// table shared with the bus listener; data is the object whole (minus the
// volatile fields of DefaultVolatile).

// apiEntity is the entity of an API object that has the fields Nova,
// Neutron and Cinder objects share (id, name, status); project is its
// owner, whose field differs between services.
func apiEntity(typ string, o map[string]any, project string) entity.Entity {
	return entity.Entity{Type: typ, ID: str(o, "id"), Name: str(o, "name"), State: str(o, "status"), Project: project, Data: o}
}

func mapServer(o map[string]any) entity.Entity {
	e := apiEntity(TypeInstance, o, str(o, "tenant_id"))
	e.ParentKey = parent(TypeHost, str(o, "OS-EXT-SRV-ATTR:host"))
	return e
}

// mapHost maps a nova-compute service record; hvs are the hypervisors that
// service runs (one, or many for ironic), kept under data["hypervisors"].
func mapHost(svc map[string]any, hvs []any) entity.Entity {
	state := str(svc, "state")
	if b, _ := svc["forced_down"].(bool); b {
		state = "down"
	}
	if hvs != nil {
		svc["hypervisors"] = hvs
	}
	host := str(svc, "host")
	return entity.Entity{
		Type:      TypeHost,
		ID:        host,
		Name:      host,
		State:     state,
		ParentKey: parent(TypeZone, str(svc, "zone")),
		Data:      svc,
	}
}

func mapZone(o map[string]any) entity.Entity {
	state := "unavailable"
	if zs, ok := o["zoneState"].(map[string]any); ok {
		if b, _ := zs["available"].(bool); b {
			state = "available"
		}
	}
	name := str(o, "zoneName")
	return entity.Entity{Type: TypeZone, ID: name, Name: name, State: state, Data: o}
}

func mapNetwork(o map[string]any) entity.Entity {
	return apiEntity(TypeNetwork, o, first(str(o, "project_id"), str(o, "tenant_id")))
}

func mapPort(o map[string]any) entity.Entity {
	e := apiEntity(TypePort, o, first(str(o, "project_id"), str(o, "tenant_id")))
	e.ParentKey = parent(TypeNetwork, str(o, "network_id"))
	if dev := str(o, "device_id"); dev != "" && strings.HasPrefix(str(o, "device_owner"), "compute:") {
		e.Links = []entity.Link{{Key: entity.MakeKey(TypeInstance, dev), Relation: "attached"}}
	}
	return e
}

func mapVolume(o map[string]any) entity.Entity {
	e := apiEntity(TypeVolume, o, str(o, "os-vol-tenant-attr:tenant_id"))
	atts, _ := o["attachments"].([]any)
	var servers []string
	for _, a := range atts {
		if m, ok := a.(map[string]any); ok {
			if id := str(m, "server_id"); id != "" {
				servers = append(servers, id)
			}
		}
	}
	// The order of attachments is the service's; sort so that it never
	// looks like a change.
	sort.Strings(servers)
	for i, id := range servers {
		if i > 0 && servers[i-1] == id {
			continue
		}
		e.Links = append(e.Links, entity.Link{Key: entity.MakeKey(TypeInstance, id), Relation: "attached"})
	}
	return e
}

func mapStack(o map[string]any) entity.Entity {
	return entity.Entity{
		Type:    TypeStack,
		ID:      str(o, "id"),
		Name:    str(o, "stack_name"),
		State:   str(o, "stack_status"),
		Project: str(o, "project"),
		Data:    o,
	}
}

// str reads a string field; null, missing and non-strings are "".
func str(o map[string]any, k string) string {
	s, _ := o[k].(string)
	return s
}

func parent(typ, id string) string {
	if id == "" {
		return ""
	}
	return entity.MakeKey(typ, id)
}

// DefaultVolatile are the data fields, per entity type, that change without
// meaning a change: the collector drops them from data itself, so the
// engine's volatile_fields need not name them (naming them again is
// harmless). Paths are entity.DropField's: dotted, "*" matching every key of
// an object or every element of a list.
var DefaultVolatile = map[string][]string{
	// nova-compute heartbeats every report_interval (10 s).
	TypeHost: {"updated_at", "hypervisors.*.uptime"},
	TypeZone: {"hosts.*.*.updated_at"},
	// A stack's resources (see setStackResources): links are URLs built
	// from the endpoint the request went to (another interface or a
	// proxy rewrites every stack). updated_time is the updated_at of the
	// resource's database row (heat's Resource._load_data), which any
	// write to the row moves: metadata refreshed after a signal to another
	// resource of the stack, convergence's engine locks, needed_by
	// bookkeeping, with type, physical id and status unchanged.
	// resource_status_reason is kept: it is set with resource_status and
	// is the one explanation of a FAILED resource.
	TypeStack: {"resources.*.links", "resources.*.updated_time"},
}

// stripVolatile drops the DefaultVolatile fields of e's type from e.Data.
func stripVolatile(e *entity.Entity) {
	for _, p := range DefaultVolatile[e.Type] {
		entity.DropField(e.Data, p)
	}
}

// SecretFields are the fields, per entity type, dropped from the API
// objects before anything else sees them (hash, database, change log,
// subscribers, logs): Nova's admin view of a server carries the user data
// it was booted with (microversion 2.3 and later), base64 text that often
// holds cloud-init passwords and keys; adminPass is in the answers to
// create, rebuild and rescue, and in older and third-party listings.
var SecretFields = map[string][]string{
	TypeInstance: {"OS-EXT-SRV-ATTR:user_data", "adminPass"},
}

// dropSecrets removes typ's SecretFields from an API object.
func dropSecrets(typ string, o map[string]any) {
	for _, f := range SecretFields[typ] {
		delete(o, f)
	}
}
