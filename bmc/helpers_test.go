package bmc_test

import (
	"fmt"
	"strings"
	"testing"

	"matchbox/bmc"
)

func fmtResult(r bmc.Result) string { return fmt.Sprintf("%+v %#v", r, r) }

// assertNoSecrets fails when the endpoint's password or username appears in
// any of texts.
func assertNoSecrets(t *testing.T, ep bmc.Endpoint, texts ...string) {
	t.Helper()
	for i, s := range texts {
		if ep.Password != "" && strings.Contains(s, ep.Password) {
			t.Errorf("text %d leaks the password: %s", i, s)
		}
		if ep.Username != "" && strings.Contains(s, ep.Username) {
			t.Errorf("text %d leaks the username: %s", i, s)
		}
	}
}
