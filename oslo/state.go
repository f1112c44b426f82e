package oslo

// stateMap is nova/api/openstack/common.py _STATE_MAP: the API status of a
// server from its vm_state and task_state. Keys are the string values of
// nova.compute.vm_states and task_states; "" is the map's 'default'.
var stateMap = map[string]map[string]string{
	"active": {
		"":                             "ACTIVE",
		"rebooting":                    "REBOOT",
		"reboot_pending":               "REBOOT",
		"reboot_started":               "REBOOT",
		"rebooting_hard":               "HARD_REBOOT",
		"reboot_pending_hard":          "HARD_REBOOT",
		"reboot_started_hard":          "HARD_REBOOT",
		"updating_password":            "PASSWORD",
		"rebuilding":                   "REBUILD",
		"rebuild_block_device_mapping": "REBUILD",
		"rebuild_spawning":             "REBUILD",
		"migrating":                    "MIGRATING",
		"resize_prep":                  "RESIZE",
		"resize_migrating":             "RESIZE",
		"resize_migrated":              "RESIZE",
		"resize_finish":                "RESIZE",
	},
	"building": {"": "BUILD"},
	"stopped": {
		"":                             "SHUTOFF",
		"resize_prep":                  "RESIZE",
		"resize_migrating":             "RESIZE",
		"resize_migrated":              "RESIZE",
		"resize_finish":                "RESIZE",
		"rebuilding":                   "REBUILD",
		"rebuild_block_device_mapping": "REBUILD",
		"rebuild_spawning":             "REBUILD",
	},
	"resized": {
		"":                 "VERIFY_RESIZE",
		"resize_reverting": "REVERT_RESIZE",
	},
	"paused": {
		"":          "PAUSED",
		"migrating": "MIGRATING",
	},
	"suspended": {"": "SUSPENDED"},
	"rescued":   {"": "RESCUE"},
	"error": {
		"":                             "ERROR",
		"rebuilding":                   "REBUILD",
		"rebuild_block_device_mapping": "REBUILD",
		"rebuild_spawning":             "REBUILD",
	},
	"deleted":           {"": "DELETED"},
	"soft-delete":       {"": "SOFT_DELETED"},
	"shelved":           {"": "SHELVED"},
	"shelved_offloaded": {"": "SHELVED_OFFLOADED"},
}

// NovaStatus returns the Nova API status ("ACTIVE", "SHUTOFF", ...) of a
// server in vmState with taskState ("" for none), exactly as Nova's
// status_from_state does, including "UNKNOWN" for a vm_state it does not know.
func NovaStatus(vmState, taskState string) string {
	m, ok := stateMap[vmState]
	if !ok {
		return "UNKNOWN"
	}
	if s, ok := m[taskState]; ok && taskState != "" {
		return s
	}
	return m[""]
}
