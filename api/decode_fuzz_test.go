package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"matchbox/hardware"
	"matchbox/hardware/facts"
	"matchbox/matchbox"
)

// FuzzDecodeRequestBodies feeds the API's request decoders (profiles,
// groups, templates of both kinds, machines) a fuzzed body as JSON, YAML
// or text: a body is decoded or refused with a 4xx naming the problem,
// never with a panic or a 5xx (as the error adapter answers it), and a
// decoded object carries the id.
func FuzzDecodeRequestBodies(f *testing.F) {
	f.Add(uint8(0), uint8(0), []byte(`{"id":"p","boot":{"kernel":"/k"}}`))
	f.Add(uint8(1), uint8(1), []byte("id: g\nprofile: p\nselector: {mac: 52-54-00-00-00-01}\nmetadata: {a: [1, {b: c}]}\n"))
	f.Add(uint8(2), uint8(2), []byte("variant: fcos\nversion: 1.5.0\n{{.x}}\n"))
	f.Add(uint8(3), uint8(2), []byte("{{range .}}{{end}}"))
	f.Add(uint8(4), uint8(0), []byte(`{"id":"m","macs":["52:54:00:00:00:01"],"labels":{"a":"b"},"state":"ready"}`))
	f.Add(uint8(4), uint8(1), []byte("macs: [zz]\nstate: nonsense\n"))
	f.Add(uint8(1), uint8(1), []byte("a: &a [x]\nb: [*a, *a]\n"))
	f.Add(uint8(0), uint8(0), []byte(strings.Repeat("[", 20000)))
	types := []string{"application/json", "application/yaml", "text/plain", ""}
	f.Fuzz(func(t *testing.T, kind, ctype uint8, body []byte) {
		req := httptest.NewRequest(http.MethodPut, "/api/v1/x/fuzzed", bytes.NewReader(body))
		if ct := types[int(ctype)%len(types)]; ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		var err error
		switch kinds := []matchbox.Kind{matchbox.KindProfile, matchbox.KindGroup, matchbox.TemplateIgnition, matchbox.TemplateGeneric}; int(kind) % 5 {
		case 4:
			var m *matchbox.Machine
			m, err = decodeMachine(req, "fuzzed")
			if err == nil && m.ID == "" {
				t.Fatalf("decoded a machine without id: %+v", m)
			}
		default:
			obj, _, derr := decodeObject(req, kinds[int(kind)%5], "fuzzed")
			err = derr
			if err == nil && obj.ID == "" {
				t.Fatalf("decoded a %s without id", obj.Kind)
			}
		}
		if err == nil {
			return
		}
		// The answer the error adapter gives it.
		ae := classify(err)
		if ae.status < 400 || ae.status >= 500 || ae.detail.Code == "" || ae.detail.Message == "" {
			t.Fatalf("refusal %v answers %d %+v, not a 4xx with a code and message", err, ae.status, ae.detail)
		}
	})
}

// FuzzDecodeInventory feeds the agent's inventory decoder a fuzzed
// report: it is decoded or refused with a 400 invalid_inventory, and
// fact terms evaluate on a decoded inventory (what group selection does
// with it) without a panic.
func FuzzDecodeInventory(f *testing.F) {
	seed, _ := json.Marshal(hardware.Inventory{})
	f.Add(seed)
	f.Add([]byte(`{"cpu":{"cores":-1,"arch":"\u0000"},"memory":{"bytes":1e300},"disks":[{"size_bytes":-5},null],"nics":[{"mac":"zz"}]}`))
	f.Add([]byte(`{"system":{"vendor":"` + strings.Repeat("v", 1000) + `"}}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"unknown": 1}`))
	var terms []facts.Term
	for _, expr := range []string{"memory.bytes >= 64GiB", "disk.count >= 2", "cpu.arch = x86_64", "system.vendor = Dell Inc.", "cpu.cores >= 8", "nic.count >= 1"} {
		term, err := facts.Parse(expr)
		if err != nil {
			f.Fatalf("%s: %v", expr, err)
		}
		terms = append(terms, term)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		inv, err := decodeInventory(body)
		if err != nil {
			var ae *apiError
			if !errors.As(err, &ae) || ae.status != http.StatusBadRequest || ae.detail.Code != CodeInvalidInventory {
				t.Fatalf("refusal is not a 400 invalid_inventory: %#v", err)
			}
			return
		}
		for _, term := range terms {
			term.Eval(&inv)
		}
	})
}
