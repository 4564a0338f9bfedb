package needs

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestSkipFailsWhenStrict runs a test that skips for a missing prerequisite
// in a child process, with and without NoSkipVar: it skips, then fails.
func TestSkipFailsWhenStrict(t *testing.T) {
	if os.Getenv("NEEDS_CHILD") == "1" {
		Skip(t, "frobnicator not installed")
		return
	}
	for _, tt := range []struct {
		env      string
		wantFail bool
		wantOut  string
	}{
		{"", false, "SKIP: TestSkipFailsWhenStrict"},
		{NoSkipVar + "=1", true, "MATCHBOX_TEST_NO_SKIP=1 forbids skipping): frobnicator not installed"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestSkipFailsWhenStrict$", "-test.v")
		cmd.Env = append(os.Environ(), "NEEDS_CHILD=1", NoSkipVar+"=")
		if tt.env != "" {
			cmd.Env = append(cmd.Env, tt.env)
		}
		out, err := cmd.CombinedOutput()
		if (err != nil) != tt.wantFail || !strings.Contains(string(out), tt.wantOut) {
			t.Errorf("%q: err %v, output:\n%s", tt.env, err, out)
		}
	}
}
