package buildinfo

import (
	"runtime/debug"
	"testing"
)

func TestFromBuild(t *testing.T) {
	vcs := func(rev, tm, modified string) func() (*debug.BuildInfo, bool) {
		return func() (*debug.BuildInfo, bool) {
			return &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
				{Key: "vcs.revision", Value: rev}, {Key: "vcs.time", Value: tm}, {Key: "vcs.modified", Value: modified},
			}}, true
		}
	}
	none := func() (*debug.BuildInfo, bool) { return nil, false }
	tests := []struct {
		name   string
		linked string
		read   func() (*debug.BuildInfo, bool)
		want   Info
		line   string
	}{
		{"linked version wins", "v1.2.0", vcs("0123456789abcdef0123", "2026-11-29T05:00:00Z", "false"),
			Info{Version: "v1.2.0", Revision: "0123456789abcdef0123", Time: "2026-11-29T05:00:00Z", GoVersion: "go1.26.8"},
			"synchronizer v1.2.0 (revision 0123456789abcdef0123, 2026-11-29T05:00:00Z) go1.26.8"},
		{"revision names a plain build", "", vcs("0123456789abcdef0123", "2026-11-29T05:00:00Z", "true"),
			Info{Version: "devel-0123456789ab-dirty", Revision: "0123456789abcdef0123", Time: "2026-11-29T05:00:00Z", Modified: true, GoVersion: "go1.26.8"},
			"synchronizer devel-0123456789ab-dirty (revision 0123456789abcdef0123, modified, 2026-11-29T05:00:00Z) go1.26.8"},
		{"nothing recorded", "", none, Info{Version: "devel"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := fromBuild(tc.linked, tc.read)
			if tc.want.GoVersion == "" {
				tc.want.GoVersion = got.GoVersion // runtime.Version()
			}
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			if tc.line != "" && got.String() != tc.line {
				t.Fatalf("String() = %q, want %q", got.String(), tc.line)
			}
		})
	}
}
