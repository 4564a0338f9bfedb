package assetstest

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestHelpBuildsNothing: each script's --help prints its usage and exits 0,
// an unknown option is refused with exit 2, and neither writes anything
// (build-discovery used to take --help for its destination and start a
// build).
func TestHelpBuildsNothing(t *testing.T) {
	requireTools(t, "bash", "sed")
	for _, name := range []string{"build-discovery", "get-ipxe"} {
		for _, tc := range []struct {
			arg      string
			wantCode int
		}{{"--help", 0}, {"-h", 0}, {"--no-such-option", 2}} {
			t.Run(name+" "+tc.arg, func(t *testing.T) {
				dir := t.TempDir()
				cmd := exec.Command(scriptPath(t, name), tc.arg)
				cmd.Dir = dir
				cmd.Env = append(os.Environ(), "CACHE_DIR="+dir+"/cache", "HOME="+dir)
				var out strings.Builder
				cmd.Stdout, cmd.Stderr = &out, &out
				err := cmd.Run()
				code := 0
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					code = ee.ExitCode()
				} else if err != nil {
					t.Fatal(err)
				}
				if code != tc.wantCode || !strings.Contains(out.String(), "Usage:") {
					t.Errorf("exit %d (want %d), output:\n%s", code, tc.wantCode, out.String())
				}
				if ents, _ := os.ReadDir(dir); len(ents) > 0 {
					t.Errorf("%s %s wrote %v", name, tc.arg, ents)
				}
			})
		}
	}
}
