package entity

// The entity types of the contract (docs/contract.md, "type"): Vitrage's
// own names, which its templates and consumers match on. Every source that
// produces one of these (the openstack and nagios collectors, the bus
// listener) uses these constants, so that a poll and a notification of the same resource
// agree on its key.
const (
	TypeInstance = "nova.instance"
	TypeHost     = "nova.host"
	TypeZone     = "nova.zone"
	TypeNetwork  = "neutron.network"
	TypePort     = "neutron.port"
	TypeVolume   = "cinder.volume"
	TypeStack    = "heat.stack"
	TypeNagios   = "nagios"
)

// ContractTypes are the entity types docs/contract.md names, sorted. A
// deployment has more: a static topology or a plugin may use any type.
var ContractTypes = []string{
	TypeVolume, TypeStack, TypeNagios, TypeNetwork, TypePort,
	TypeHost, TypeInstance, TypeZone, "static",
}

// ActiveSet is the set of the types in active_entity_types, nil when there
// are none: no active types means every type is active. Its users keep it
// behind an atomic pointer, so that a reload swaps it whole.
func ActiveSet(types []string) map[string]bool {
	if len(types) == 0 {
		return nil
	}
	set := make(map[string]bool, len(types))
	for _, t := range types {
		set[t] = true
	}
	return set
}
