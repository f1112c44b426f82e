package openstack

import "github.com/openstack-synchronizer/synchronizer/entity"

// Entity types this package lists: the contract's (package entity), by the
// short names the package uses throughout.
const (
	TypeInstance = entity.TypeInstance
	TypeHost     = entity.TypeHost
	TypeZone     = entity.TypeZone
	TypeNetwork  = entity.TypeNetwork
	TypePort     = entity.TypePort
	TypeVolume   = entity.TypeVolume
	TypeStack    = entity.TypeStack
)
