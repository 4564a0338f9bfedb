package api

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"matchbox/api/wire"
)

// FuzzDecodeBundle feeds a bundle of one fuzzed file beside valid ones:
// decoding never panics, and an error names the fuzzed file.
func FuzzDecodeBundle(f *testing.F) {
	f.Add("profiles/a.yaml", "id: a\nboot:\n  kernel: /k\n")
	f.Add("groups/g.json", `{"id": "g", "profile": "a", "selector": {"mac": 7}}`)
	f.Add("groups/g.yaml", "id: [\n")
	f.Add("ignition/x.ign", "{}")
	f.Add("../etc/passwd", "x")
	f.Add("profiles/", "")
	f.Add("profiles/.hidden", "id: h")
	f.Add("profiles/a.yaml", "- 1\n- 2\n")
	f.Add("generic/a b", "{{")
	f.Fuzz(func(t *testing.T, name, content string) {
		files := map[string]string{
			"profiles/fixed.yaml": "id: fixed\n",
			"groups/fixed.yaml":   "id: fixedgroup\nprofile: fixed\n",
		}
		if _, taken := files[name]; taken {
			return
		}
		files[name] = content
		c, err := DecodeBundle(wire.Bundle{Files: files})
		if err != nil {
			msg := err.Error()
			if !strings.Contains(msg, name) && !strings.Contains(msg, strconv.Quote(name)) {
				t.Fatalf("error does not name %q: %v", name, err)
			}
			var ae *apiError
			if !errors.As(err, &ae) || ae.status != 400 || ae.detail.Code != CodeInvalidBundle {
				t.Fatalf("error is not a 400 invalid_bundle: %#v", err)
			}
			return
		}
		if n := len(c.Profiles) + len(c.Groups) + len(c.Templates); n < 2 {
			t.Fatalf("decoded %d objects from a valid bundle", n)
		}
	})
}

// FuzzPlanRequest feeds raw request bodies to the plan request decoder.
func FuzzPlanRequest(f *testing.F) {
	f.Add(`{"files": {"profiles/a.yaml": "id: a\n"}, "prune": true}`)
	f.Add(`{"files": null}`)
	f.Add(`{"files": {"groups/x": "{"}}`)
	f.Add(`[]`)
	f.Fuzz(func(t *testing.T, body string) {
		req, err := decodePlanRequest(strings.NewReader(body))
		if err != nil {
			return
		}
		DecodeBundle(req.Bundle)
	})
}
