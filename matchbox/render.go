package matchbox

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"

	"matchbox/matchbox/ignition"
)

// Request is what the boot endpoints know of a request: its labels and raw
// query string.
type Request struct {
	Labels   Labels
	RawQuery string
	// Extra variables for templates (the agent token of a machine, say); they
	// are set after metadata and selectors and before request.
	Extra map[string]any
}

// Variables collects the data templates see, in the order matchbox always
// used: the group's metadata, then its selector (keys lower-cased), then
// extra variables, then request.query and request.raw_query. g is a group of
// a Snapshot, whose metadata was put in JSON types when it was built; the
// result shares its nested values, which templates only read.
func Variables(g *Group, r Request) map[string]any {
	data := make(map[string]any, len(g.Metadata)+len(g.Selector)+len(r.Extra)+1)
	for k, v := range g.Metadata {
		data[k] = v
	}
	for k, v := range g.Selector {
		data[strings.ToLower(k)] = v
	}
	for k, v := range r.Extra {
		data[k] = v
	}
	query := make(map[string]string, len(r.Labels))
	for k, v := range r.Labels {
		query[k] = v
	}
	data["request"] = map[string]any{"query": query, "raw_query": r.RawQuery}
	return data
}

// BootArgs renders the profile's kernel arguments: template arguments are
// executed with the variables data returns (called only when the profile has
// template arguments), plain ones are returned as they are.
func (s *Snapshot) BootArgs(profileID string, vars func() map[string]any) ([]string, error) {
	cp, ok := s.profiles[profileID]
	if !ok {
		return nil, fmt.Errorf("profile %q does not exist", profileID)
	}
	var data map[string]any
	args := make([]string, len(cp.profile.Boot.Args))
	for i, a := range cp.profile.Boot.Args {
		if cp.args[i] == nil {
			args[i] = a
			continue
		}
		if data == nil {
			data = vars()
		}
		var b strings.Builder
		if err := cp.args[i].Execute(&b, data); err != nil {
			return nil, fmt.Errorf("profile %q: boot.args[%d]: %w", profileID, i, err)
		}
		args[i] = b.String()
	}
	return args, nil
}

// StaticArgs reports whether a profile's kernel arguments are all plain
// (no template actions), so that its boot scripts are the same for every
// machine and can be rendered once per snapshot.
func (s *Snapshot) StaticArgs(profileID string) bool {
	cp, ok := s.profiles[profileID]
	if !ok {
		return false
	}
	for _, t := range cp.args {
		if t != nil {
			return false
		}
	}
	return true
}

// RenderIgnition returns the Ignition JSON for a profile's ignition_id: a raw
// Ignition config as stored, or a Butane template rendered with data and
// translated. The result may be shared with other callers: it must not be
// changed.
func (s *Snapshot) RenderIgnition(name string, data map[string]any) ([]byte, error) {
	ct, ok := s.templates[TemplateIgnition][name]
	if !ok {
		return nil, fmt.Errorf("ignition template %q: %w", name, ErrMissingTemplate)
	}
	if ct.ignition {
		return []byte(ct.tmpl.Content), nil
	}
	var buf bytes.Buffer
	if err := ct.parsed.Execute(&buf, data); err != nil {
		return nil, fmt.Errorf("render %q: %w", name, err)
	}
	// Translation costs milliseconds of CPU; its result depends on the
	// rendered text only, so it is done once per distinct text.
	key := sha256.Sum256(buf.Bytes())
	if out, ok := ct.translated.get(key); ok {
		return out, nil
	}
	ct.translated.requested.Add(1)
	out, err := ignition.TranslateButane(buf.Bytes())
	if err != nil {
		return nil, fmt.Errorf("template %q: %w", name, err)
	}
	ct.translated.put(key, out)
	return out, nil
}

// RenderGeneric renders a generic template with data.
func (s *Snapshot) RenderGeneric(name string, data map[string]any) ([]byte, error) {
	ct, ok := s.templates[TemplateGeneric][name]
	if !ok {
		return nil, fmt.Errorf("generic template %q: %w", name, ErrMissingTemplate)
	}
	var buf bytes.Buffer
	if err := ct.parsed.Execute(&buf, data); err != nil {
		return nil, fmt.Errorf("render %q: %w", name, err)
	}
	return buf.Bytes(), nil
}

// ArgsRefs returns the variables a profile's template kernel arguments
// name (all, for a profile that does not exist).
func (s *Snapshot) ArgsRefs(profileID string) *VarRefs {
	cp, ok := s.profiles[profileID]
	if !ok {
		return nil
	}
	return cp.refs
}

// TemplateRefs returns the variables a template names: none for raw
// Ignition, all for a template that does not exist.
func (s *Snapshot) TemplateRefs(kind TemplateKind, name string) *VarRefs {
	ct, ok := s.templates[kind][name]
	if !ok {
		return nil
	}
	if ct.parsed == nil {
		return &VarRefs{}
	}
	return ct.refs
}

// Template returns a stored template by kind and name.
func (s *Snapshot) Template(kind TemplateKind, name string) (*Template, bool) {
	ct, ok := s.templates[kind][name]
	if !ok {
		return nil, false
	}
	return ct.tmpl, true
}

// WriteEnvFile writes data as KEY=value lines, nested maps flattened with
// their parents' keys joined by "_" and upper-cased, as matchbox's /metadata
// always did; keys are sorted so the output is stable. Lists and nulls are
// skipped, as before.
func WriteEnvFile(w io.Writer, data map[string]any) error {
	var lines []string
	flattenEnv("", data, &lines)
	sort.Strings(lines)
	for _, l := range lines {
		if _, err := io.WriteString(w, l+"\n"); err != nil {
			return fmt.Errorf("write metadata: %w", err)
		}
	}
	return nil
}

func flattenEnv(prefix string, m map[string]any, lines *[]string) {
	for k, v := range m {
		name := prefix + k
		switch val := v.(type) {
		case string, bool, float64, int, int64, json.Number:
			*lines = append(*lines, fmt.Sprintf("%s=%v", strings.ToUpper(name), val))
		case map[string]string:
			sub := make(map[string]any, len(val))
			for sk, sv := range val {
				sub[sk] = sv
			}
			flattenEnv(name+"_", sub, lines)
		case map[string]any:
			flattenEnv(name+"_", val, lines)
		}
	}
}
