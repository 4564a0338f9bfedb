package matchbox

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// snapshotView is what a snapshot tells its readers, for comparing a
// snapshot built by Apply with one built by Build.
type snapshotView struct {
	Groups   []string
	Profiles []string
	Warnings []string
	Dangling []string
	Counts   [3]int
	Selected map[string]string // mac -> group id or error
}

func viewOf(s *Snapshot, macs []string) snapshotView {
	v := snapshotView{Warnings: s.Warnings(), Dangling: s.Dangling(), Selected: map[string]string{}}
	v.Counts[0], v.Counts[1], v.Counts[2] = s.Counts()
	for _, g := range s.Groups() {
		v.Groups = append(v.Groups, g.ID)
	}
	for id := range s.profiles {
		v.Profiles = append(v.Profiles, id)
	}
	sort.Strings(v.Profiles)
	for _, mac := range macs {
		m, err := s.Select(Labels{"mac": mac, "uuid": "u1", "os": "installed", "region": "east"}, nil)
		switch {
		case err != nil && m.Group != nil:
			v.Selected[mac] = m.Group.ID + ": " + err.Error()
		case err != nil:
			v.Selected[mac] = err.Error()
		default:
			v.Selected[mac] = m.Group.ID + " " + m.Profile.ID
		}
	}
	return v
}

// TestApplyMatchesBuild applies random single and multi-object changes and
// checks after each that the snapshot answers as Build's of the same
// catalog does, refusals included.
func TestApplyMatchesBuild(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	macs := []string{"52:54:00:00:00:01", "52:54:00:00:00:02", "52:54:00:00:00:03", "52:54:00:00:00:04"}
	cat := map[string]Change{} // kind/id -> object
	randomChange := func() Change {
		switch rng.IntN(5) {
		case 0:
			id := fmt.Sprintf("p%d", rng.IntN(3))
			p := &Profile{ID: id, Boot: Boot{Kernel: "/k", Args: []string{"host={{.hostname}}"}}}
			if rng.IntN(2) == 0 {
				p.GenericID = fmt.Sprintf("t%d", rng.IntN(2))
			}
			if rng.IntN(2) == 0 {
				p.IgnitionID = fmt.Sprintf("i%d", rng.IntN(2))
			}
			if rng.IntN(10) == 0 {
				p.ProvisionedBy = "nowhere" // refused by the lifecycle check
			}
			if rng.IntN(4) == 0 {
				return Change{Kind: KindProfile, ID: id}
			}
			return Change{Kind: KindProfile, ID: id, Profile: p}
		case 1:
			if rng.IntN(3) == 0 {
				name := fmt.Sprintf("i%d", rng.IntN(2))
				if rng.IntN(3) == 0 {
					return Change{Kind: TemplateIgnition, ID: name}
				}
				content := `{"ignition":{"version":"3.4.0"}}`
				return Change{Kind: TemplateIgnition, ID: name, Template: &Template{Kind: TemplateIgnition, Name: name, Content: content}}
			}
			name := fmt.Sprintf("t%d", rng.IntN(2))
			if rng.IntN(3) == 0 {
				return Change{Kind: TemplateGeneric, ID: name}
			}
			content := "x {{.hostname}}"
			if rng.IntN(6) == 0 {
				content = "broken {{"
			}
			return Change{Kind: TemplateGeneric, ID: name, Template: &Template{Kind: TemplateGeneric, Name: name, Content: content}}
		default:
			id := fmt.Sprintf("g%d", rng.IntN(12))
			if rng.IntN(5) == 0 {
				return Change{Kind: KindGroup, ID: id}
			}
			sel := map[string]string{}
			if rng.IntN(3) > 0 {
				sel["mac"] = macs[rng.IntN(len(macs))]
			}
			if rng.IntN(4) == 0 {
				sel["uuid"] = fmt.Sprintf("u%d", rng.IntN(2))
			}
			if rng.IntN(2) == 0 {
				sel["os"] = "installed"
			}
			if rng.IntN(3) == 0 {
				sel["region"] = "east"
			}
			g := &Group{ID: id, Profile: fmt.Sprintf("p%d", rng.IntN(3)), Priority: rng.IntN(2), Selector: sel, Metadata: map[string]any{"hostname": id}}
			return Change{Kind: KindGroup, ID: id, Group: g}
		}
	}
	catalogOf := func(m map[string]Change) Catalog {
		var c Catalog
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			ch := m[k]
			switch {
			case ch.Profile != nil:
				c.Profiles = append(c.Profiles, *ch.Profile)
			case ch.Group != nil:
				c.Groups = append(c.Groups, *ch.Group)
			case ch.Template != nil:
				c.Templates = append(c.Templates, *ch.Template)
			}
		}
		return c
	}
	snap, err := Build(Catalog{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	refused, withDangling, withTies := 0, 0, 0
	for step := 0; step < 3000; step++ {
		changes := []Change{randomChange()}
		for rng.IntN(3) == 0 {
			changes = append(changes, randomChange())
		}
		next := map[string]Change{}
		for k, v := range cat {
			next[k] = v
		}
		for _, ch := range changes {
			k := string(ch.Kind) + "/" + ch.ID
			if ch.Profile == nil && ch.Group == nil && ch.Template == nil {
				delete(next, k)
			} else {
				next[k] = ch
			}
		}
		want, wantErr := Build(catalogOf(next), nil)
		got, gotErr := snap.Apply(changes, nil)
		if (wantErr == nil) != (gotErr == nil) {
			t.Fatalf("step %d: Build error %v, Apply error %v", step, wantErr, gotErr)
		}
		if wantErr != nil {
			var ve *ValidationError
			if !errors.As(gotErr, &ve) {
				t.Fatalf("step %d: Apply error %T, want *ValidationError", step, gotErr)
			}
			refused++
			continue
		}
		if diff := cmp.Diff(viewOf(want, macs), viewOf(got, macs)); diff != "" {
			t.Fatalf("step %d: Apply(%+v) differs from Build (-build +apply):\n%s", step, changes, diff)
		}
		if diff := cmp.Diff(want.NewDangling(snap), got.NewDangling(snap)); diff != "" {
			t.Fatalf("step %d: NewDangling after Apply(%+v) differs from Build's (-build +apply):\n%s", step, changes, diff)
		}
		if len(got.Dangling()) > 0 {
			withDangling++
		}
		if len(got.Warnings()) > len(got.Dangling()) {
			withTies++
		}
		snap, cat = got, next
	}
	if refused == 0 || refused > 2000 {
		t.Errorf("%d of 3000 changes refused: the test does not exercise both outcomes", refused)
	}
	if withDangling == 0 || withTies == 0 {
		t.Errorf("%d snapshots with dangling references, %d with possible ties: the test does not exercise both", withDangling, withTies)
	}
	t.Logf("%d changes refused, %d snapshots with dangling references, %d with possible ties", refused, withDangling, withTies)
}
