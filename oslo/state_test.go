package oslo

import "testing"

func TestNovaStatus(t *testing.T) {
	tests := []struct{ vm, task, want string }{
		{"active", "", "ACTIVE"},
		{"active", "scheduling", "ACTIVE"},
		{"active", "rebooting", "REBOOT"},
		{"active", "reboot_started_hard", "HARD_REBOOT"},
		{"active", "updating_password", "PASSWORD"},
		{"active", "rebuild_spawning", "REBUILD"},
		{"active", "migrating", "MIGRATING"},
		{"active", "resize_finish", "RESIZE"},
		{"active", "powering-off", "ACTIVE"},
		{"building", "spawning", "BUILD"},
		{"stopped", "", "SHUTOFF"},
		{"stopped", "resize_prep", "RESIZE"},
		{"stopped", "rebuilding", "REBUILD"},
		{"stopped", "powering-on", "SHUTOFF"},
		{"resized", "", "VERIFY_RESIZE"},
		{"resized", "resize_reverting", "REVERT_RESIZE"},
		{"resized", "resize_confirming", "VERIFY_RESIZE"},
		{"paused", "", "PAUSED"},
		{"paused", "migrating", "MIGRATING"},
		{"suspended", "resuming", "SUSPENDED"},
		{"rescued", "", "RESCUE"},
		{"error", "", "ERROR"},
		{"error", "rebuild_block_device_mapping", "REBUILD"},
		{"deleted", "", "DELETED"},
		{"soft-delete", "", "SOFT_DELETED"},
		{"shelved", "", "SHELVED"},
		{"shelved_offloaded", "unshelving", "SHELVED_OFFLOADED"},
		{"", "", "UNKNOWN"},
		{"weird", "rebooting", "UNKNOWN"},
	}
	for _, tc := range tests {
		if got := NovaStatus(tc.vm, tc.task); got != tc.want {
			t.Errorf("NovaStatus(%q, %q) = %q, want %q", tc.vm, tc.task, got, tc.want)
		}
	}
}
