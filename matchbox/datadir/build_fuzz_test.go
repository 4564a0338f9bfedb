package datadir_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"matchbox/hardware/facts"
	"matchbox/matchbox"
	"matchbox/matchbox/datadir"
)

// FuzzBuildDataDir feeds a data directory of fuzzed files (a profile, a
// group with metadata, a Butane template, a raw Ignition config and a
// generic template) through what `matchbox serve` does with one: read it
// (datadir.ReadFiles), compile the snapshot (matchbox.Build), select the
// group's machine and render its kernel arguments, Ignition and generic
// template. Bad files are refused naming the file, a catalog Build refuses
// lists its problems, and whatever Build accepts renders without a panic;
// rendered Ignition is valid JSON.
func FuzzBuildDataDir(f *testing.F) {
	f.Add("id: p\nboot:\n  kernel: /k\n  initrd: [/i]\n  args: ['host={{.hostname}}', 'q={{.request.raw_query}}']\nignition_id: c.yaml\ngeneric_id: g.txt\n",
		"id: g\nprofile: p\nselector: {mac: 52-54-00-00-00-01}\nmetadata:\n  hostname: node1\n  ssh: [a, b]\n",
		"variant: fcos\nversion: 1.5.0\nstorage:\n  files:\n    - path: /etc/hostname\n      contents:\n        inline: \"{{.hostname}}\"\n",
		`{"ignition":{"version":"3.3.0"}}`,
		"host={{.hostname}} {{range .ssh}}{{.}} {{end}}\n")
	f.Add(`{"id":"p","boot":{"kernel":"/k","args":["{{.x}}"]},"ignition_id":"raw.ign","generic_id":"g.txt"}`,
		`{"id":"g","profile":"p","selector":{"mac":"52:54:00:00:00:01"},"facts":["cpu.cores >= 2"],"metadata":{"x":{"y":[1,2,{"z":null}]}}}`,
		"variant: fcos\nversion: 9.9.9\n", `{"ignition":{"version":"3.3.0"},"storage":{}}`, "{{.x.y}}{{template \"z\"}}")
	f.Add("id: p\nignition_id: c.yaml\n", "id: g\nprofile: p\nmetadata: {a: &a [*a]}\n",
		"{{define \"t\"}}{{template \"t\"}}{{end}}{{template \"t\"}}", "{", "{{printf \"%s\" (index . \"request\")}}")
	f.Add("id: p\nboot: {kernel: \"{{\"}}\n", "id: g\nprofile: p\nselector: {os: \"}}\"}\n", "", "", "{{call .x}}")
	f.Fuzz(func(t *testing.T, profile, group, butane, raw, generic string) {
		content, err := datadir.ReadFiles(map[string]string{
			"profiles/p.yaml":  profile,
			"groups/g.yaml":    group,
			"ignition/c.yaml":  butane,
			"ignition/raw.ign": raw,
			"generic/g.txt":    generic,
		})
		if err != nil {
			var fe *datadir.FileError
			if !errors.As(err, &fe) || fe.File == "" {
				t.Fatalf("read refused without naming the file: %v", err)
			}
			return
		}
		cat := content.Catalog()
		snap, err := matchbox.Build(cat, facts.ParseFact)
		if err != nil {
			var ve *matchbox.ValidationError
			if !errors.As(err, &ve) || len(ve.Problems) == 0 {
				t.Fatalf("Build refused without a list of problems: %v", err)
			}
			return
		}
		for _, g := range snap.Groups() {
			labels := matchbox.Labels{}
			for k, v := range g.Selector {
				labels[strings.ToLower(k)] = v
			}
			m, err := snap.Select(labels, nil)
			if err != nil || m.Profile == nil {
				continue // facts need an inventory; a missing profile is reported
			}
			req := matchbox.Request{Labels: labels, RawQuery: "mac=52:54:00:00:00:01"}
			vars := func() map[string]any { return matchbox.Variables(m.Group, req) }
			snap.BootArgs(m.Profile.ID, vars)
			if id := m.Profile.IgnitionID; id != "" {
				if out, err := snap.RenderIgnition(id, vars()); err == nil && !json.Valid(out) {
					t.Fatalf("ignition %q rendered invalid JSON: %q", id, out)
				}
			}
			if id := m.Profile.GenericID; id != "" {
				snap.RenderGeneric(id, vars())
			}
		}
	})
}
