// Package needs is how a test says it cannot run for want of a
// prerequisite (root, a Debian package, the network): it skips, saying why,
// except under MATCHBOX_TEST_NO_SKIP=1 (set by CI's .ci/run), where the same
// call fails the test, so that a CI run cannot pass while the tests that
// would have noticed a regression were skipped. Skips for -short are not
// missing prerequisites and do not use this package.
package needs

import (
	"fmt"
	"os"
	"testing"
)

// NoSkipVar is the environment variable that turns skips into failures.
const NoSkipVar = "MATCHBOX_TEST_NO_SKIP"

// Strict reports whether missing prerequisites fail tests: NoSkipVar is 1
// and the tests do not run with -short.
func Strict() bool { return os.Getenv(NoSkipVar) == "1" && !testing.Short() }

// Skip skips t for a missing prerequisite (why), or fails it when Strict.
func Skip(t testing.TB, why string) {
	t.Helper()
	if Strict() {
		t.Fatalf("missing prerequisite (%s=1 forbids skipping): %s", NoSkipVar, why)
	}
	t.Skip(why)
}

// Skipf is Skip with a format.
func Skipf(t testing.TB, format string, args ...any) {
	t.Helper()
	Skip(t, fmt.Sprintf(format, args...))
}
