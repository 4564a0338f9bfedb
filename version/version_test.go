package version

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestFrom(t *testing.T) {
	bi := &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Path: "matchbox", Version: "(devel)"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.modified", Value: "true"}}}
	tests := []struct {
		name            string
		bi              *debug.BuildInfo
		version, commit string
		want            Info
		str             string
	}{
		{"nothing known", nil, "", "", Info{Version: "devel", Commit: "unknown", GoVersion: "unknown"}, "matchbox devel commit unknown unknown"},
		{"toolchain only", bi, "", "", Info{Version: "devel", Commit: "abc123", Modified: true, GoVersion: "go1.26.0"}, "matchbox devel commit abc123 (modified) go1.26.0"},
		{"stamped wins", bi, "v1.2.3", "def456", Info{Version: "v1.2.3", Commit: "def456", Modified: true, GoVersion: "go1.26.0"}, "matchbox v1.2.3 commit def456 (modified) go1.26.0"},
		{"module version", &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "v0.12.0"}}, "", "", Info{Version: "v0.12.0", Commit: "unknown", GoVersion: "go1.26.0"}, "matchbox v0.12.0 commit unknown go1.26.0"},
	}
	for _, tc := range tests {
		got := from(tc.bi, tc.version, tc.commit)
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
		if got.String() != tc.str {
			t.Errorf("%s: String() = %q, want %q", tc.name, got.String(), tc.str)
		}
	}
}

// The linker stamps reach Get, as make build sets them.
func TestLinkerStamps(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary")
	}
	dir := t.TempDir()
	main := filepath.Join(dir, "main.go")
	src := "package main\nimport (\"fmt\"; \"matchbox/version\")\nfunc main() { fmt.Print(version.Get()) }\n"
	if err := writeFile(main, src); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "v")
	cmd := exec.Command("go", "build", "-o", bin, "-ldflags", "-X matchbox/version.version=v9.9.9 -X matchbox/version.commit=feedbeef", main)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(out), "matchbox v9.9.9 commit feedbeef") || !strings.Contains(string(out), " go1.") {
		t.Errorf("stamped binary says %q", out)
	}
}

func writeFile(path, s string) error {
	return os.WriteFile(path, []byte(s), 0o644)
}
