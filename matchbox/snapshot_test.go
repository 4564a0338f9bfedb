package matchbox

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"matchbox/hardware"
)

func profiles(ids ...string) []Profile {
	out := make([]Profile, len(ids))
	for i, id := range ids {
		out[i] = Profile{ID: id, Boot: Boot{Kernel: "/assets/" + id + "/vmlinuz"}}
	}
	return out
}

func mustBuild(t testing.TB, c Catalog) *Snapshot {
	t.Helper()
	s, err := Build(c, nil)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return s
}

func TestNormalizeMACCanonicalDoesNotAllocate(t *testing.T) {
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := NormalizeMAC("52:54:00:ab:cd:01"); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("NormalizeMAC of a canonical MAC: %v allocations, want 0", allocs)
	}
}

func TestNormalizeMAC(t *testing.T) {
	cases := []struct{ in, want, err string }{
		{"52:54:00:AB:cd:01", "52:54:00:ab:cd:01", ""},
		{"52-54-00-ab-cd-01", "52:54:00:ab:cd:01", ""},
		{"525400abcd01", "52:54:00:ab:cd:01", ""},
		{"5254.00ab.cd01", "52:54:00:ab:cd:01", ""},
		{" 52:54:00:ab:cd:01 ", "52:54:00:ab:cd:01", ""},
		{"52:54:00:ab:cd:01", "52:54:00:ab:cd:01", ""},
		{"52:54:00:ab:cd:0g", "", "invalid MAC"},
		{"52:54:00:ab:cd", "", "invalid MAC"},
		{"zz5400abcd01", "", "invalid MAC"},
		{"00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01", "", "want 6 bytes"},
		{"", "", "invalid MAC"},
	}
	for _, c := range cases {
		got, err := NormalizeMAC(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("NormalizeMAC(%q) error = %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("NormalizeMAC(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

func TestLabelsFromQuery(t *testing.T) {
	q, _ := url.ParseQuery("mac=52-54-00-AB-CD-01&uuid=u1&os=installed&os=other&empty=")
	l, err := LabelsFromQuery(q)
	if err != nil {
		t.Fatal(err)
	}
	want := Labels{"mac": "52:54:00:ab:cd:01", "uuid": "u1", "os": "installed", "empty": ""}
	if fmt.Sprint(l) != fmt.Sprint(want) {
		t.Fatalf("labels = %v, want %v", l, want)
	}
	q, _ = url.ParseQuery("mac=nope&uuid=u1")
	l, err = LabelsFromQuery(q)
	if err == nil {
		t.Fatal("bad MAC gave no error")
	}
	if _, ok := l["mac"]; ok || l["uuid"] != "u1" {
		t.Fatalf("bad MAC must be dropped and others kept: %v", l)
	}
}

func TestLabelsFromRawQuery(t *testing.T) {
	for _, raw := range []string{
		"mac=nope&mac=52:54:00:00:00:01&uuid=a",
		"mac=52-54-00-00-00-01&mac=nope",
		"os=a%20b&os=c&x=%zz&y=1+2&=v&k",
	} {
		q, _ := url.ParseQuery(raw)
		want, _ := LabelsFromQuery(q)
		got, _ := LabelsFromRawQuery(raw)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("LabelsFromRawQuery(%q) = %v, LabelsFromQuery = %v", raw, got, want)
		}
	}
}

func TestSelect(t *testing.T) {
	groups := []Group{
		{ID: "default", Profile: "p-default"},
		{ID: "by-mac", Profile: "p-mac", Selector: map[string]string{"mac": "52-54-00-00-00-01"}},
		{ID: "by-mac-installed", Profile: "p-installed", Selector: map[string]string{"mac": "52:54:00:00:00:01", "os": "installed"}},
		{ID: "by-uuid", Profile: "p-uuid", Selector: map[string]string{"uuid": "u-1"}},
		{ID: "region-a", Profile: "p-region", Selector: map[string]string{"region": "a"}},
		{ID: "region-a-zone-z", Profile: "p-zone", Selector: map[string]string{"region": "a", "zone": "z"}},
		{ID: "region-b-zone-z", Profile: "p-zone", Selector: map[string]string{"region": "b", "zone": "z"}},
		{ID: "pinned", Profile: "p-pinned", Selector: map[string]string{"rack": "r9"}, Priority: 10},
		{ID: "serial", Profile: "p-mac", Selector: map[string]string{"serial": "S1"}},
		{ID: "host", Profile: "p-mac", Selector: map[string]string{"hostname": "n1.example"}},
	}
	s := mustBuild(t, Catalog{Profiles: profiles("p-default", "p-mac", "p-installed", "p-uuid", "p-region", "p-zone", "p-pinned"), Groups: groups})
	cases := []struct {
		name   string
		labels Labels
		want   string
	}{
		{"nothing: default", Labels{}, "default"},
		{"unknown mac: default", Labels{"mac": "52:54:00:00:00:99"}, "default"},
		{"mac", Labels{"mac": "52:54:00:00:00:01"}, "by-mac"},
		{"more terms win", Labels{"mac": "52:54:00:00:00:01", "os": "installed"}, "by-mac-installed"},
		{"extra labels are fine", Labels{"mac": "52:54:00:00:00:01", "foo": "bar"}, "by-mac"},
		{"uuid", Labels{"uuid": "u-1"}, "by-uuid"},
		{"two terms over one", Labels{"region": "a", "zone": "z"}, "region-a-zone-z"},
		{"one term", Labels{"region": "a"}, "region-a"},
		{"value differs", Labels{"region": "c", "zone": "z"}, "default"},
		{"priority beats terms", Labels{"rack": "r9", "mac": "52:54:00:00:00:01", "os": "installed"}, "pinned"},
		{"serial", Labels{"serial": "S1"}, "serial"},
		{"hostname", Labels{"hostname": "n1.example"}, "host"},
		{"label keys are case sensitive", Labels{"Region": "a"}, "default"},
		{"same term count: greatest selector string wins", Labels{"serial": "S1", "hostname": "n1.example"}, "serial"},
		{"uuid=... sorts after mac=...", Labels{"mac": "52:54:00:00:00:01", "uuid": "u-1"}, "by-uuid"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := s.Select(c.labels, nil)
			if err != nil {
				t.Fatalf("Select(%v): %v", c.labels, err)
			}
			if m.Group.ID != c.want {
				t.Fatalf("Select(%v) = %s, want %s", c.labels, m.Group.ID, c.want)
			}
			if m.Profile == nil || m.Profile.ID != m.Group.Profile {
				t.Fatalf("profile %v does not belong to group %s", m.Profile, m.Group.ID)
			}
		})
	}
	// Without a default group nothing matches an unknown machine.
	s2 := mustBuild(t, Catalog{Profiles: profiles("p"), Groups: []Group{{ID: "g", Profile: "p", Selector: map[string]string{"mac": "52:54:00:00:00:01"}}}})
	if _, err := s2.Select(Labels{"mac": "52:54:00:00:00:02"}, nil); !errors.Is(err, ErrNoMatch) {
		t.Fatalf("unknown machine without default: err = %v", err)
	}
}

// TestSelectMatchesLinearScan checks the indexed selection against the
// documented precedence applied by a plain scan of every group.
func TestSelectMatchesLinearScan(t *testing.T) {
	var groups []Group
	keys := []string{"mac", "uuid", "os", "region"}
	vals := []string{"52:54:00:00:00:01", "52:54:00:00:00:02", "x", "y"}
	n := 0
	for mask := 0; mask < 1<<len(keys); mask++ {
		for v := 0; v < 2; v++ {
			sel := map[string]string{}
			for i, k := range keys {
				if mask&(1<<i) != 0 {
					if k == "mac" {
						sel[k] = vals[v]
					} else {
						sel[k] = vals[2+v]
					}
				}
			}
			if mask == 0 && v == 1 {
				continue
			}
			groups = append(groups, Group{ID: fmt.Sprintf("g%d", n), Profile: "p", Selector: sel, Priority: n % 3 / 2})
			n++
		}
	}
	s := mustBuild(t, Catalog{Profiles: profiles("p"), Groups: groups})
	ordered := s.Groups()
	for mask := 0; mask < 1<<len(keys); mask++ {
		for v := 0; v < 2; v++ {
			labels := Labels{}
			for i, k := range keys {
				if mask&(1<<i) != 0 {
					if k == "mac" {
						labels[k] = vals[v]
					} else {
						labels[k] = vals[2+(v+i)%2]
					}
				}
			}
			var want string
			for _, g := range ordered {
				ok := true
				for k, val := range g.Selector {
					ok = ok && labels[k] == val
				}
				if ok {
					want = g.ID
					break
				}
			}
			m, err := s.Select(labels, nil)
			if err != nil || m.Group.ID != want {
				t.Fatalf("Select(%v) = %v, %v; linear scan says %s", labels, m.Group, err, want)
			}
		}
	}
}

func TestBuildRejects(t *testing.T) {
	cases := []struct {
		name string
		c    Catalog
		want []string
	}{
		{"two defaults", Catalog{Profiles: profiles("p"), Groups: []Group{{ID: "a", Profile: "p"}, {ID: "b", Profile: "p"}}},
			[]string{`groups "a" and "b" are both default groups`}},
		{"identical selectors across MAC forms", Catalog{Profiles: profiles("p"), Groups: []Group{
			{ID: "a", Profile: "p", Selector: map[string]string{"mac": "52:54:00:00:00:01"}},
			{ID: "b", Profile: "p", Selector: map[string]string{"mac": "52-54-00-00-00-01"}}}},
			[]string{`groups "a" and "b" have identical selectors {mac=52:54:00:00:00:01}`}},
		{"identical selectors, different priority", Catalog{Profiles: profiles("p"), Groups: []Group{
			{ID: "a", Profile: "p", Selector: map[string]string{"os": "x"}},
			{ID: "b", Profile: "p", Selector: map[string]string{"os": "x"}, Priority: 5}}},
			[]string{`identical selectors`}},
		{"bad mac", Catalog{Profiles: profiles("p"), Groups: []Group{{ID: "a", Profile: "p", Selector: map[string]string{"mac": "nope"}}}},
			[]string{`group "a": selector mac: invalid MAC address "nope"`}},
		{"bad ignition", Catalog{Profiles: []Profile{{ID: "p", IgnitionID: "x.ign"}},
			Templates: []Template{{Kind: TemplateIgnition, Name: "x.ign", Content: `{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"rel"}]}}`}}},
			[]string{`ignition template "x.ign": invalid Ignition config`}},
		{"bad template syntax", Catalog{Templates: []Template{{Kind: TemplateGeneric, Name: "g", Content: "{{.x"}}},
			[]string{`generic template "g"`}},
		{"bad templated arg", Catalog{Profiles: []Profile{{ID: "p", Boot: Boot{Args: []string{"a={{.x"}}}}},
			[]string{`profile "p": boot.args[0]`}},
		{"duplicate profile", Catalog{Profiles: profiles("p", "p")}, []string{`profile "p" is defined twice`}},
		{"bad id", Catalog{Profiles: profiles("../x")}, []string{`profile id "../x" is invalid`}},
		{"facts without parser", Catalog{Profiles: profiles("p"), Groups: []Group{{ID: "a", Profile: "p", Facts: []string{"cpu.cores >= 2"}}}},
			[]string{"hardware-fact terms are not supported"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Build(c.c, nil)
			if err == nil {
				t.Fatal("Build accepted an invalid catalog")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// TestDanglingReferences: a group naming a missing profile and a profile
// naming missing templates are stored and reported; selecting the group
// says why nothing can be served.
func TestDanglingReferences(t *testing.T) {
	before := mustBuild(t, Catalog{Profiles: []Profile{{ID: "p", IgnitionID: "x.yaml", GenericID: "y"}}})
	s := mustBuild(t, Catalog{
		Profiles: []Profile{{ID: "p", IgnitionID: "x.yaml", GenericID: "y"}},
		Groups:   []Group{{ID: "a", Profile: "nope", Selector: map[string]string{"os": "x"}}, {ID: "d", Profile: "p"}},
	})
	want := []string{
		`group "a": profile "nope" does not exist`,
		`profile "p": generic_id "y" names no generic template`,
		`profile "p": ignition_id "x.yaml" names no ignition template`,
	}
	if diff := cmp.Diff(want, s.Dangling()); diff != "" {
		t.Errorf("Dangling (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want[:1], s.NewDangling(before)); diff != "" {
		t.Errorf("NewDangling (-want +got):\n%s", diff)
	}
	if got := s.Warnings(); len(got) != 3 || got[0] != "dangling reference: "+want[0] {
		t.Errorf("Warnings = %q, want the dangling references first", got)
	}
	m, err := s.Select(Labels{"os": "x"}, nil)
	if !errors.Is(err, ErrMissingProfile) || m.Group == nil || m.Group.ID != "a" || m.Profile != nil {
		t.Errorf("Select of a group whose profile is missing = %v, %v; want group a and ErrMissingProfile", m, err)
	}
	m, err = s.Select(Labels{}, nil)
	if err != nil || m.Profile.ID != "p" {
		t.Fatalf("Select default = %v, %v", m, err)
	}
	if _, err := s.RenderIgnition(m.Profile.IgnitionID, nil); !errors.Is(err, ErrMissingTemplate) {
		t.Errorf("RenderIgnition of a missing template: %v, want ErrMissingTemplate", err)
	}
	if _, err := s.RenderGeneric(m.Profile.GenericID, nil); !errors.Is(err, ErrMissingTemplate) {
		t.Errorf("RenderGeneric of a missing template: %v, want ErrMissingTemplate", err)
	}
}

func TestTieWarnings(t *testing.T) {
	s := mustBuild(t, Catalog{Profiles: profiles("p"), Groups: []Group{
		{ID: "os", Profile: "p", Selector: map[string]string{"os": "installed"}},
		{ID: "region", Profile: "p", Selector: map[string]string{"region": "a"}},
		{ID: "mac1", Profile: "p", Selector: map[string]string{"mac": "52:54:00:00:00:01"}},
		{ID: "mac2", Profile: "p", Selector: map[string]string{"mac": "52:54:00:00:00:02"}},
		{ID: "pinned", Profile: "p", Selector: map[string]string{"zone": "z"}, Priority: 1},
	}})
	w := strings.Join(s.Warnings(), "\n")
	// os/region, os/mac*, region/mac* can tie; mac1/mac2 cannot; pinned has its own priority.
	for _, want := range []string{`"region" {region=a} and "os" {os=installed}`, `"mac1"`, `"mac2"`} {
		if !strings.Contains(w, want) {
			t.Errorf("warnings do not mention %s:\n%s", want, w)
		}
	}
	if strings.Contains(w, `"mac2" {mac=52:54:00:00:00:02} and "mac1"`) || strings.Contains(w, `"mac1" {mac=52:54:00:00:00:01} and "mac2"`) {
		t.Errorf("groups pinned to different MACs cannot tie:\n%s", w)
	}
	if strings.Contains(w, "pinned") {
		t.Errorf("a group of its own priority cannot tie:\n%s", w)
	}
	if n := len(s.Warnings()); n != 5 {
		t.Errorf("got %d warnings, want 5:\n%s", n, w)
	}
}

func TestTieWarningsLargeBucket(t *testing.T) {
	var groups []Group
	for i := 0; i < 500; i++ {
		groups = append(groups, Group{ID: fmt.Sprintf("m%d", i), Profile: "p", Selector: map[string]string{"mac": fmt.Sprintf("52:54:00:00:%02x:%02x", i/256, i%256)}})
	}
	groups = append(groups, Group{ID: "rack", Profile: "p", Selector: map[string]string{"rack": "r1"}})
	s := mustBuild(t, Catalog{Profiles: profiles("p"), Groups: groups})
	w := s.Warnings()
	// rack can tie with each of the 500 MAC groups; MAC groups never tie together.
	if last := w[len(w)-1]; !strings.Contains(last, fmt.Sprintf("%d more possible ties", 500-maxTieWarnings)) {
		t.Fatalf("last warning = %q", last)
	}
}

type fakeFact struct {
	expr string
	min  int
}

func (f fakeFact) String() string                    { return f.expr }
func (f fakeFact) Eval(inv *hardware.Inventory) bool { return inv.CPU.Cores >= f.min }

func TestSelectFacts(t *testing.T) {
	parse := func(expr string) (FactTerm, error) {
		var n int
		if _, err := fmt.Sscanf(expr, "cpu.cores >= %d", &n); err != nil {
			return nil, fmt.Errorf("position 0: %v", err)
		}
		return fakeFact{expr: expr, min: n}, nil
	}
	s, err := Build(Catalog{Profiles: profiles("big", "small", "d"), Groups: []Group{
		{ID: "d", Profile: "d"},
		{ID: "big", Profile: "big", Facts: []string{"cpu.cores >= 16"}},
		{ID: "small", Profile: "small", Facts: []string{"cpu.cores >= 2"}},
		{ID: "mac", Profile: "small", Selector: map[string]string{"mac": "52:54:00:00:00:01"}},
	}}, parse)
	if err != nil {
		t.Fatal(err)
	}
	inv := func(cores int) *hardware.Inventory {
		i := &hardware.Inventory{}
		i.CPU.Cores = cores
		return i
	}
	for _, c := range []struct {
		inv    *hardware.Inventory
		labels Labels
		want   string
	}{
		{nil, Labels{}, "d"},
		{inv(1), Labels{}, "d"},
		{inv(4), Labels{}, "small"},
		{inv(32), Labels{}, "small"}, // same term count: "cpu.cores >= 2" > "cpu.cores >= 16"
		{inv(32), Labels{"mac": "52:54:00:00:00:01"}, "mac"},
	} {
		m, err := s.Select(c.labels, c.inv)
		if err != nil || m.Group.ID != c.want {
			t.Errorf("Select(%v, %v) = %v, %v; want %s", c.labels, c.inv, m.Group, err, c.want)
		}
	}
	if _, err := Build(Catalog{Profiles: profiles("p"), Groups: []Group{{ID: "a", Profile: "p", Facts: []string{"bogus"}}}}, parse); err == nil || !strings.Contains(err.Error(), `facts[0] "bogus"`) {
		t.Fatalf("bad fact term: %v", err)
	}
}

func TestMachineUUID(t *testing.T) {
	for in, want := range map[string]string{
		"":                                     "",
		"00000000-0000-0000-0000-000000000000": "",
		"FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF": "",
		"4C4C4544-0042-3310-8051-B4C04F4B4D32": "4c4c4544-0042-3310-8051-b4c04f4b4d32",
		" abc ":                                "abc",
	} {
		if got := MachineUUID(in); got != want {
			t.Errorf("MachineUUID(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLabelsString(t *testing.T) {
	if got := (Labels{"os": "x", "mac": "52:54:00:00:00:01", "a": ""}).String(); got != "a=,mac=52:54:00:00:00:01,os=x" {
		t.Fatalf("String() = %q", got)
	}
	if got := (Labels{}).String(); got != "" {
		t.Fatalf("empty: %q", got)
	}
}

func TestMetadataNormalizedOnce(t *testing.T) {
	in := map[string]any{"n": 3, "nested": map[string]any{"k": "v"}}
	s := mustBuild(t, Catalog{Profiles: profiles("p"), Groups: []Group{{ID: "g", Profile: "p", Metadata: in}}})
	g, _ := s.Group("g")
	if _, ok := g.Metadata["n"].(float64); !ok {
		t.Fatalf("metadata number is %T, want float64 as JSON data directories give", g.Metadata["n"])
	}
	vars := Variables(g, Request{Labels: Labels{"mac": "x"}})
	vars["n"] = "changed"
	if g.Metadata["n"] != 3.0 || in["n"] != 3 {
		t.Fatalf("variables share the snapshot's top-level map: %v %v", g.Metadata, in)
	}
	if vars["nested"].(map[string]any)["k"] != "v" || vars["request"].(map[string]any)["query"].(map[string]string)["mac"] != "x" {
		t.Fatalf("variables: %v", vars)
	}
}

func TestPrecedes(t *testing.T) {
	s := mustBuild(t, Catalog{Profiles: profiles("p"), Groups: []Group{
		{ID: "d", Profile: "p"},
		{ID: "m", Profile: "p", Selector: map[string]string{"mac": "52:54:00:00:00:01"}},
	}})
	m, _ := s.Group("m")
	d, _ := s.Group("d")
	if !s.Precedes(m, d) || s.Precedes(d, m) || s.Precedes(m, m) || s.Precedes(m, &Group{ID: "other"}) {
		t.Fatal("Precedes disagrees with the precedence order")
	}
}
