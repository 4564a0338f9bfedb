package matchbox

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"text/template"

	"matchbox/hardware"
	"matchbox/matchbox/ignition"
)

// Catalog is the declarative content a snapshot is built from.
type Catalog struct {
	Profiles  []Profile
	Groups    []Group
	Templates []Template
}

// Snapshot is an immutable, validated index of profiles, groups and
// templates. Request handlers read it without locks; every write to the store
// builds a new one and swaps it in.
type Snapshot struct {
	profiles map[string]*compiledProfile
	// ordered is every group in precedence order, sorted on first use
	// (orderOnce): a write does not pay for it, a listing does once per
	// snapshot.
	orderOnce  sync.Once
	ordered    []*compiledGroup
	groupCount int
	byID       *cowMap[*compiledGroup]
	anchored   map[string]*cowMap[[]*compiledGroup] // key -> value -> groups in precedence order
	floating   []*compiledGroup                     // groups without an indexed key, in precedence order
	templates  map[TemplateKind]map[string]*compiledTemplate
	warnings   []string
	dangling   []string        // references naming missing objects, sorted
	bySelector *cowMap[string] // selector string -> group id
	ties       map[tiePair]struct{}
}

type compiledProfile struct {
	profile *Profile
	args    []*template.Template // nil entries are plain arguments
	// refs are the variables the template arguments name.
	refs *VarRefs
}

type compiledTemplate struct {
	tmpl     *Template
	parsed   *template.Template // nil for raw Ignition served as is
	ignition bool               // raw Ignition JSON
	// translated caches the Ignition JSON of rendered Butane texts (a
	// Butane template's only).
	translated *translateCache
	// refs are the variables the template names (nil for raw Ignition).
	refs *VarRefs
}

// ValidationError lists every problem found while building a snapshot.
type ValidationError struct {
	Problems []string
}

func (e *ValidationError) Error() string {
	if len(e.Problems) == 1 {
		return e.Problems[0]
	}
	return fmt.Sprintf("%d problems: %s", len(e.Problems), strings.Join(e.Problems, "; "))
}

// Build validates a catalog and indexes it. It refuses groups with identical
// selectors, invalid templates and invalid Ignition. Pairs of groups that can
// tie (same priority and number of terms, compatible selectors) are accepted
// and reported by Warnings. Groups naming a missing profile and profiles
// naming a missing template are accepted too (single-object writes come in
// any order, as matchbox v0.11 allowed) and reported by Dangling and
// Warnings; machines they select are answered 404 with the reason. The
// catalog's values are copied.
func Build(c Catalog, parseFact FactParser) (*Snapshot, error) {
	s := &Snapshot{
		profiles:  make(map[string]*compiledProfile, len(c.Profiles)),
		byID:      newCowMap[*compiledGroup](),
		anchored:  make(map[string]*cowMap[[]*compiledGroup]),
		templates: map[TemplateKind]map[string]*compiledTemplate{TemplateIgnition: {}, TemplateGeneric: {}},
	}
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	for i := range c.Templates {
		t := c.Templates[i]
		ct, err := compileTemplate(&t)
		if err != nil {
			add("%s template %q: %v", t.Kind, t.Name, err)
			continue
		}
		byName, ok := s.templates[t.Kind]
		if !ok {
			add("template %q: unknown kind %q", t.Name, t.Kind)
			continue
		}
		if _, dup := byName[t.Name]; dup {
			add("%s template %q is defined twice", t.Kind, t.Name)
			continue
		}
		byName[t.Name] = ct
	}

	for i := range c.Profiles {
		p := c.Profiles[i]
		cp, errs := compileProfile(p)
		problems = append(problems, errs...)
		if cp == nil {
			continue
		}
		if _, dup := s.profiles[p.ID]; dup {
			add("profile %q is defined twice", p.ID)
			continue
		}
		s.profiles[p.ID] = cp
	}

	s.bySelector = newCowMap[string]()
	for i := range c.Groups {
		cg, errs := compileGroup(c.Groups[i], parseFact)
		problems = append(problems, errs...)
		if cg == nil {
			continue
		}
		if _, dup := s.byID.get(cg.group.ID); dup {
			add("group %q is defined twice", cg.group.ID)
			continue
		}
		if err := s.claimSelector(cg); err != nil {
			add("%v", err)
			continue
		}
		s.byID.set(cg.group.ID, cg)
		s.ordered = append(s.ordered, cg)
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return nil, &ValidationError{Problems: problems}
	}

	sort.Slice(s.ordered, func(i, j int) bool { return precedes(s.ordered[i], s.ordered[j]) })
	s.orderOnce.Do(func() {})
	s.groupCount = len(s.ordered)
	for _, cg := range s.ordered {
		if key, ok := anchorKey(cg.group.Selector); ok {
			byValue := s.anchored[key]
			if byValue == nil {
				byValue = newCowMap[[]*compiledGroup]()
				s.anchored[key] = byValue
			}
			v := cg.group.Selector[key]
			list, _ := byValue.get(v)
			byValue.set(v, append(list, cg))
		} else {
			s.floating = append(s.floating, cg)
		}
	}
	s.ties = findAllTies(s.ordered)
	s.finish()
	return s, nil
}

// finish computes what a snapshot reports about its whole catalog once its
// indexes are in place: possible ties and dangling references.
func (s *Snapshot) finish() {
	s.warnings = tieWarnings(s.ties)
	s.dangling = nil
	for _, cp := range s.profiles {
		p := cp.profile
		if p.IgnitionID != "" {
			if _, ok := s.templates[TemplateIgnition][p.IgnitionID]; !ok {
				s.dangling = append(s.dangling, fmt.Sprintf("profile %q: ignition_id %q names no ignition template", p.ID, p.IgnitionID))
			}
		}
		if p.GenericID != "" {
			if _, ok := s.templates[TemplateGeneric][p.GenericID]; !ok {
				s.dangling = append(s.dangling, fmt.Sprintf("profile %q: generic_id %q names no generic template", p.ID, p.GenericID))
			}
		}
	}
	s.byID.each(func(cg *compiledGroup) {
		if _, ok := s.profiles[cg.group.Profile]; !ok {
			s.dangling = append(s.dangling, groupDangling(cg))
		}
	})
	sort.Strings(s.dangling)
}

// groupDangling is the dangling reference of a group whose profile does
// not exist.
func groupDangling(cg *compiledGroup) string {
	return fmt.Sprintf("group %q: profile %q does not exist", cg.group.ID, cg.group.Profile)
}

// claimSelector records cg's selector as taken, or refuses it when another
// group of s already has the identical selector.
func (s *Snapshot) claimSelector(cg *compiledGroup) error {
	if other, dup := s.bySelector.get(cg.sortKey); dup {
		if cg.sortKey == "" {
			return fmt.Errorf("groups %q and %q are both default groups (empty selector): keep one", other, cg.group.ID)
		}
		return fmt.Errorf("groups %q and %q have identical selectors {%s}", other, cg.group.ID, cg.sortKey)
	}
	s.bySelector.set(cg.sortKey, cg.group.ID)
	return nil
}

// compileProfile validates a profile and parses its templated kernel
// arguments. It returns nil when the profile cannot be indexed at all.
func compileProfile(p Profile) (*compiledProfile, []string) {
	if err := ValidateID("profile", p.ID); err != nil {
		return nil, []string{err.Error()}
	}
	if err := p.ValidateLifecycle(); err != nil {
		return nil, []string{err.Error()}
	}
	var problems []string
	cp := &compiledProfile{profile: &p, args: make([]*template.Template, len(p.Boot.Args))}
	for j, arg := range p.Boot.Args {
		if !strings.Contains(arg, "{{") {
			continue
		}
		t, err := template.New(fmt.Sprintf("%s.args[%d]", p.ID, j)).Option("missingkey=error").Parse(arg)
		if err != nil {
			problems = append(problems, fmt.Sprintf("profile %q: boot.args[%d]: %v", p.ID, j, err))
			continue
		}
		cp.args[j] = t
	}
	cp.refs = refsOf(cp.args...)
	return cp, problems
}

// compileGroup validates a group (a copy of g) and precomputes what
// selection needs. It returns nil and the problems when g is invalid.
func compileGroup(g Group, parseFact FactParser) (*compiledGroup, []string) {
	g.Selector = copyLabels(g.Selector)
	if err := NormalizeGroup(&g); err != nil {
		return nil, []string{err.Error()}
	}
	if err := normalizeMetadata(&g); err != nil {
		return nil, []string{err.Error()}
	}
	cg := &compiledGroup{group: &g}
	var problems []string
	for j, expr := range g.Facts {
		if parseFact == nil {
			problems = append(problems, fmt.Sprintf("group %q: facts[%d]: hardware-fact terms are not supported here", g.ID, j))
			continue
		}
		term, err := parseFact(expr)
		if err != nil {
			problems = append(problems, fmt.Sprintf("group %q: facts[%d] %q: %v", g.ID, j, expr, err))
			continue
		}
		cg.facts = append(cg.facts, term)
	}
	if len(problems) > 0 {
		return nil, problems
	}
	cg.terms = len(g.Selector) + len(cg.facts)
	cg.selector = make([]labelTerm, 0, len(g.Selector))
	for k, v := range g.Selector {
		cg.selector = append(cg.selector, labelTerm{k, v})
	}
	cg.sortKey = SelectorString(&g, cg.facts)
	if key, ok := anchorKey(g.Selector); ok {
		cg.anchorKey, cg.anchorValue = key, g.Selector[key]
	}
	return cg, nil
}

// normalizeMetadata replaces a group's metadata with a deep copy in JSON
// types (float64 numbers, map[string]any), once, when the snapshot is built:
// YAML and JSON data directories then render alike, and requests share the
// copy read-only instead of copying it each time.
func normalizeMetadata(g *Group) error {
	if g.Metadata == nil {
		return nil
	}
	raw, err := json.Marshal(g.Metadata)
	if err != nil {
		return fmt.Errorf("group %q: metadata: %w", g.ID, err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return fmt.Errorf("group %q: metadata: %w", g.ID, err)
	}
	g.Metadata = m
	return nil
}

func copyLabels(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func anchorKey(sel map[string]string) (string, bool) {
	for _, k := range indexedKeys {
		if _, ok := sel[k]; ok {
			return k, true
		}
	}
	return "", false
}

func compileTemplate(t *Template) (*compiledTemplate, error) {
	if err := ValidateTemplateName(t.Name); err != nil {
		return nil, err
	}
	ct := &compiledTemplate{tmpl: t}
	if t.Kind == TemplateIgnition && ignition.IsIgnitionName(t.Name) {
		if err := ignition.Validate([]byte(t.Content)); err != nil {
			return nil, err
		}
		ct.ignition = true
		return ct, nil
	}
	parsed, err := template.New(t.Name).Option("missingkey=error").Parse(t.Content)
	if err != nil {
		return nil, err
	}
	ct.parsed = parsed
	ct.refs = refsOf(parsed)
	if t.Kind == TemplateIgnition {
		ct.translated = newTranslateCache(translateCacheBytes)
		if ct.refs.None() {
			ct.pretranslate()
		}
	}
	return ct, nil
}

// pretranslate translates a Butane template that reads no variable, whose
// Ignition JSON is then the same for every machine, when it is compiled
// (when it is written, or loaded), so that no request pays the
// translation. A template that fails to render or translate is left to
// the request path, which answers the error.
func (ct *compiledTemplate) pretranslate() {
	var buf bytes.Buffer
	if err := ct.parsed.Execute(&buf, map[string]any{}); err != nil {
		return
	}
	out, err := ignition.TranslateButane(buf.Bytes())
	if err != nil {
		return
	}
	ct.translated.put(sha256.Sum256(buf.Bytes()), out)
}

// maxTieWarnings bounds how many tie warnings are spelled out.
const maxTieWarnings = 50

// tiePair is two groups that can tie, first the one tried first.
type tiePair struct{ first, second *compiledGroup }

func newTiePair(a, b *compiledGroup) tiePair {
	if precedes(b, a) {
		a, b = b, a
	}
	return tiePair{a, b}
}

// findAllTies finds every pair of groups with the same priority and number
// of terms whose selectors some request could satisfy together: their
// order then rests on the selector-string tie-break alone.
func findAllTies(groups []*compiledGroup) map[tiePair]struct{} {
	type bucketKey struct{ priority, terms int }
	buckets := map[bucketKey][]*compiledGroup{}
	for _, g := range groups {
		k := bucketKey{g.group.Priority, g.terms}
		buckets[k] = append(buckets[k], g)
	}
	ties := map[tiePair]struct{}{}
	for _, b := range buckets {
		findTies(b, nil, func(a, b *compiledGroup) { ties[newTiePair(a, b)] = struct{}{} })
	}
	return ties
}

// tiesOf adds to ties every pair that g forms with a group of groups.
func tiesOf(g *compiledGroup, groups []*compiledGroup, ties map[tiePair]struct{}) {
	for _, h := range groups {
		if h == g || h.group.Priority != g.group.Priority || h.terms != g.terms {
			continue
		}
		if g.anchorKey != "" && g.anchorKey == h.anchorKey && g.anchorValue != h.anchorValue {
			continue
		}
		if canTie(g, h) {
			ties[newTiePair(g, h)] = struct{}{}
		}
	}
}

// tieWarnings spells out the first maxTieWarnings pairs of ties in
// precedence order, and how many more there are.
func tieWarnings(ties map[tiePair]struct{}) []string {
	pairs := make([]tiePair, 0, len(ties))
	for p := range ties {
		pairs = append(pairs, p)
	}
	sort.Slice(pairs, func(i, j int) bool {
		if pairs[i].first != pairs[j].first {
			return precedes(pairs[i].first, pairs[j].first)
		}
		return precedes(pairs[i].second, pairs[j].second)
	})
	var out []string
	for i, p := range pairs {
		if i == maxTieWarnings {
			out = append(out, fmt.Sprintf("%d more possible ties not listed", len(pairs)-i))
			break
		}
		out = append(out, fmt.Sprintf("groups %q {%s} and %q {%s} can both match one request with equal priority and specificity; %q wins by the selector-string tie-break",
			p.first.group.ID, p.first.sortKey, p.second.group.ID, p.second.sortKey, p.first.group.ID))
	}
	return out
}

// findTies reports every pair in gs that canTie, partitioning by the most
// common label key so that groups pinned to different values of one key
// (different MACs, say) are never compared.
func findTies(gs []*compiledGroup, used map[string]bool, report func(a, b *compiledGroup)) {
	if len(gs) < 2 {
		return
	}
	if len(gs) <= 64 {
		findTiesQuadratic(gs, report)
		return
	}
	counts := map[string]int{}
	for _, g := range gs {
		for k := range g.group.Selector {
			if !used[k] {
				counts[k]++
			}
		}
	}
	best, bestN := "", 0
	for k, n := range counts {
		if n > bestN || (n == bestN && k < best) {
			best, bestN = k, n
		}
	}
	if bestN == 0 {
		findTiesQuadratic(gs, report)
		return
	}
	parts := map[string][]*compiledGroup{}
	var rest []*compiledGroup
	for _, g := range gs {
		if v, ok := g.group.Selector[best]; ok {
			parts[v] = append(parts[v], g)
		} else {
			rest = append(rest, g)
		}
	}
	nextUsed := map[string]bool{best: true}
	for k := range used {
		nextUsed[k] = true
	}
	values := make([]string, 0, len(parts))
	for v := range parts {
		values = append(values, v)
	}
	sort.Strings(values)
	for _, v := range values {
		findTies(parts[v], nextUsed, report)
	}
	// Groups without the key can tie with any group.
	for i, r := range rest {
		for _, g := range rest[i+1:] {
			if canTie(r, g) {
				report(r, g)
			}
		}
		for _, v := range values {
			for _, g := range parts[v] {
				if canTie(r, g) {
					report(r, g)
				}
			}
		}
	}
}

// findTiesQuadratic reports every pair in gs that canTie by comparing each
// pair: for few groups, or groups no label key partitions.
func findTiesQuadratic(gs []*compiledGroup, report func(a, b *compiledGroup)) {
	for i := range gs {
		for j := i + 1; j < len(gs); j++ {
			if canTie(gs[i], gs[j]) {
				report(gs[i], gs[j])
			}
		}
	}
}

// Warnings returns the dangling references and the possible ties found when
// the snapshot was built.
func (s *Snapshot) Warnings() []string {
	out := make([]string, 0, len(s.dangling)+len(s.warnings))
	for _, d := range s.dangling {
		out = append(out, "dangling reference: "+d)
	}
	return append(out, s.warnings...)
}

// Dangling returns the references that name missing objects, sorted: groups
// whose profile does not exist, profiles whose ignition_id or generic_id
// names no template.
func (s *Snapshot) Dangling() []string { return append([]string(nil), s.dangling...) }

// NewDangling returns the dangling references of s that before (nil: an
// empty catalog) does not have: those a change from before to s introduced.
func (s *Snapshot) NewDangling(before *Snapshot) []string {
	had := map[string]bool{}
	if before != nil {
		for _, d := range before.dangling {
			had[d] = true
		}
	}
	var out []string
	for _, d := range s.dangling {
		if !had[d] {
			out = append(out, d)
		}
	}
	return out
}

// NoNewDangling refuses a change from before to after that introduces
// dangling references: it returns a *ValidationError naming them, or nil.
// Declarative writes of whole bundles (apply, data-directory import) use it;
// single-object writes accept dangling references and warn.
func NoNewDangling(before, after *Snapshot) error {
	news := after.NewDangling(before)
	if len(news) == 0 {
		return nil
	}
	problems := make([]string, len(news))
	for i, d := range news {
		problems[i] = d + " (a bundle must leave no dangling reference)"
	}
	return &ValidationError{Problems: problems}
}

// ErrNoMatch is returned by Select when no group matches.
var ErrNoMatch = errors.New("no group matches")

// ErrMissingProfile is returned (wrapped) by Select when the selected group
// names a profile that does not exist; the Match then holds the group.
var ErrMissingProfile = errors.New("profile does not exist")

// ErrMissingTemplate is returned (wrapped) by the render methods when a
// profile names a template that does not exist.
var ErrMissingTemplate = errors.New("template does not exist")

// Match is the outcome of a selection.
type Match struct {
	Group   *Group
	Profile *Profile
}

// Select returns the first group, in precedence order, whose label terms all
// hold for labels and whose fact terms all hold for inv (nil when the machine
// has reported no inventory), with its profile; ErrNoMatch when there is
// none, ErrMissingProfile (wrapped, the Match holding the group) when the
// group's profile does not exist. Its cost depends on the groups that share the
// request's mac, uuid, serial or hostname and on the groups without such a
// term, not on the total number of groups.
func (s *Snapshot) Select(labels Labels, inv *hardware.Inventory) (Match, error) {
	var best *compiledGroup
	consider := func(list []*compiledGroup) {
		for _, g := range list {
			if best != nil && !precedes(g, best) {
				return
			}
			if g.matchesLabels(labels) && g.matchesFacts(inv) {
				best = g
				return
			}
		}
	}
	for _, key := range indexedKeys {
		if v, ok := labels[key]; ok {
			list, _ := s.anchored[key].get(v)
			consider(list)
		}
	}
	consider(s.floating)
	if best == nil {
		return Match{}, ErrNoMatch
	}
	cp, ok := s.profiles[best.group.Profile]
	if !ok {
		return Match{Group: best.group}, fmt.Errorf("group %q names profile %q: %w", best.group.ID, best.group.Profile, ErrMissingProfile)
	}
	return Match{Group: best.group, Profile: cp.profile}, nil
}

// Profile returns a profile by id.
func (s *Snapshot) Profile(id string) (*Profile, bool) {
	p, ok := s.profiles[id]
	if !ok {
		return nil, false
	}
	return p.profile, true
}

// Group returns a group by id.
func (s *Snapshot) Group(id string) (*Group, bool) {
	g, ok := s.byID.get(id)
	if !ok {
		return nil, false
	}
	return g.group, true
}

// Precedes reports whether group a is tried before group b (both of this
// snapshot).
func (s *Snapshot) Precedes(a, b *Group) bool {
	ca, okA := s.byID.get(a.ID)
	cb, okB := s.byID.get(b.ID)
	return okA && okB && precedes(ca, cb)
}

// orderedGroups returns every group in precedence order, sorting them on
// the snapshot's first call.
func (s *Snapshot) orderedGroups() []*compiledGroup {
	s.orderOnce.Do(func() {
		list := make([]*compiledGroup, 0, s.groupCount)
		s.byID.each(func(cg *compiledGroup) { list = append(list, cg) })
		sort.Slice(list, func(i, j int) bool { return precedes(list[i], list[j]) })
		s.ordered = list
	})
	return s.ordered
}

// Groups returns the groups in precedence order.
func (s *Snapshot) Groups() []*Group {
	list := s.orderedGroups()
	out := make([]*Group, len(list))
	for i, g := range list {
		out[i] = g.group
	}
	return out
}

// Counts returns how many profiles, groups and templates the snapshot holds.
func (s *Snapshot) Counts() (profiles, groups, templates int) {
	return len(s.profiles), s.groupCount, len(s.templates[TemplateIgnition]) + len(s.templates[TemplateGeneric])
}
