// Package version tells which build of matchbox is running: the version
// and commit stamped by `make build` (-ldflags -X), else what the Go
// toolchain recorded in the binary (module version, VCS revision), and the
// Go version it was built with.
package version

import (
	"fmt"
	"runtime/debug"
)

// Set at link time by make build:
//
//	-ldflags "-X matchbox/version.version=v1.2.3 -X matchbox/version.commit=0123abc"
//
// They are written by the linker only; nothing assigns them at run time.
var (
	version string
	commit  string
)

// Info describes a build.
type Info struct {
	Version   string // "v1.2.3", or "devel" when nothing stamped one
	Commit    string // VCS revision, "unknown" when not recorded
	Modified  bool   // built from a work tree with uncommitted changes
	GoVersion string // "go1.26.0"
}

// Get returns the running binary's build information.
func Get() Info {
	bi, _ := debug.ReadBuildInfo()
	return from(bi, version, commit)
}

// from combines link-time stamps with the toolchain's build information
// (bi may be nil).
func from(bi *debug.BuildInfo, stampedVersion, stampedCommit string) Info {
	info := Info{Version: stampedVersion, Commit: stampedCommit}
	if bi != nil {
		info.GoVersion = bi.GoVersion
		if info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if info.Commit == "" {
					info.Commit = s.Value
				}
			case "vcs.modified":
				info.Modified = s.Value == "true"
			}
		}
	}
	if info.Version == "" {
		info.Version = "devel"
	}
	if info.Commit == "" {
		info.Commit = "unknown"
	}
	if info.GoVersion == "" {
		info.GoVersion = "unknown"
	}
	return info
}

// String is the one-line form `matchbox version` prints:
// "matchbox v1.2.3 commit 0123abc go1.26.0", with "(modified)" after the
// commit when the work tree was dirty.
func (i Info) String() string {
	c := i.Commit
	if i.Modified {
		c += " (modified)"
	}
	return fmt.Sprintf("matchbox %s commit %s %s", i.Version, c, i.GoVersion)
}
