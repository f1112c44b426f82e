// Package buildinfo says which build of the synchronizer is running: the
// version set by the Makefile, else what the Go toolchain recorded (module
// version, VCS revision and time, whether the tree was modified).
package buildinfo

import (
	"runtime"
	"runtime/debug"
	"strings"
)

// Version is set at link time by `make build`
// (-ldflags "-X .../buildinfo.Version=$(git describe)"). Empty otherwise.
var Version string

// Info is the build of the running binary, as shown by `version` and
// `status` and as the labels of synchronizer_build_info.
type Info struct {
	Version   string `json:"version"`
	Revision  string `json:"revision,omitempty"`
	Time      string `json:"time,omitempty"`
	Modified  bool   `json:"modified,omitempty"`
	GoVersion string `json:"go_version"`
}

// Get reads the build information of the running binary.
func Get() Info {
	return fromBuild(Version, debug.ReadBuildInfo)
}

func fromBuild(linked string, read func() (*debug.BuildInfo, bool)) Info {
	info := Info{Version: linked, GoVersion: runtime.Version()}
	bi, ok := read()
	if ok {
		info.GoVersion = bi.GoVersion
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				info.Revision = s.Value
			case "vcs.time":
				info.Time = s.Value
			case "vcs.modified":
				info.Modified = s.Value == "true"
			}
		}
		if info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.Version = bi.Main.Version
		}
	}
	if info.Version == "" {
		// A plain `go build` in a checkout: name it by its revision, the way
		// `git describe --always` would.
		info.Version = "devel"
		if len(info.Revision) >= 12 {
			info.Version += "-" + info.Revision[:12]
		}
		if info.Modified {
			info.Version += "-dirty"
		}
	}
	return info
}

// String is the one-line form of `synchronizer --version`.
func (i Info) String() string {
	var b strings.Builder
	b.WriteString("synchronizer ")
	b.WriteString(i.Version)
	if i.Revision != "" {
		b.WriteString(" (revision ")
		b.WriteString(i.Revision)
		if i.Modified {
			b.WriteString(", modified")
		}
		if i.Time != "" {
			b.WriteString(", ")
			b.WriteString(i.Time)
		}
		b.WriteString(")")
	}
	b.WriteString(" ")
	b.WriteString(i.GoVersion)
	return b.String()
}
