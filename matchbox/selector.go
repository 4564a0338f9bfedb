package matchbox

import (
	"fmt"
	"sort"
	"strings"

	"matchbox/hardware"
)

// FactTerm is a parsed hardware-fact term of a group selector.
type FactTerm interface {
	// String is the canonical form of the term; two terms with the same
	// canonical form are the same term.
	String() string
	// Eval reports whether the inventory satisfies the term; a nil
	// inventory (nothing reported) satisfies no term.
	Eval(inv *hardware.Inventory) bool
}

// FactParser parses a hardware-fact term; its error names the position of a
// syntax error.
type FactParser func(expr string) (FactTerm, error)

// selectorKeys are the label keys indexed for constant-time matching, in the
// order tried when a group has several of them.
var indexedKeys = [...]string{"mac", "uuid", "serial", "hostname"}

// compiledGroup is a group prepared for matching.
type compiledGroup struct {
	group   *Group
	facts   []FactTerm
	terms   int    // number of label and fact terms
	sortKey string // sorted "key=value" terms joined by ","
	// anchorKey is the first indexed key of the selector ("" for none),
	// anchorValue its value: groups anchored on one key with different
	// values never tie.
	anchorKey, anchorValue string
	// selector is the group's label terms as a slice: matching walks it
	// instead of iterating the selector map on every request.
	selector []labelTerm
}

// labelTerm is one key=value term of a group selector.
type labelTerm struct{ key, value string }

// NormalizeGroup checks a group and normalises its selector in place: a mac
// selector is rewritten to the lower-case colon form.
func NormalizeGroup(g *Group) error {
	if err := ValidateID("group", g.ID); err != nil {
		return err
	}
	if g.Profile == "" {
		return fmt.Errorf("group %q: field profile is required", g.ID)
	}
	for key, val := range g.Selector {
		if key == "" {
			return fmt.Errorf("group %q: selector has an empty key", g.ID)
		}
		if strings.EqualFold(key, "mac") {
			mac, err := NormalizeMAC(val)
			if err != nil {
				return fmt.Errorf("group %q: selector %s: %w", g.ID, key, err)
			}
			g.Selector[key] = mac
		}
	}
	return nil
}

// SelectorString is the group's terms as sorted "key=value" strings joined
// by ","; hardware-fact terms join in their canonical form. Two groups with the
// same selector string have identical selectors.
func SelectorString(g *Group, facts []FactTerm) string {
	terms := sortedPairs(g.Selector)
	for _, f := range facts {
		terms = append(terms, f.String())
	}
	sort.Strings(terms)
	return strings.Join(terms, ",")
}

// precedes reports whether group a is tried before group b: higher priority
// first, then more terms, then the greater selector string, then the
// smaller id (only reached by groups with identical selectors, which a
// snapshot refuses).
func precedes(a, b *compiledGroup) bool {
	if a.group.Priority != b.group.Priority {
		return a.group.Priority > b.group.Priority
	}
	if a.terms != b.terms {
		return a.terms > b.terms
	}
	if a.sortKey != b.sortKey {
		return a.sortKey > b.sortKey
	}
	return a.group.ID < b.group.ID
}

// matchesLabels reports whether every label term of g holds for labels.
func (c *compiledGroup) matchesLabels(labels Labels) bool {
	for _, t := range c.selector {
		if got, ok := labels[t.key]; !ok || got != t.value {
			return false
		}
	}
	return true
}

// matchesFacts reports whether every fact term holds for inv; a group with
// fact terms never matches a machine without an inventory.
func (c *compiledGroup) matchesFacts(inv *hardware.Inventory) bool {
	if len(c.facts) == 0 {
		return true
	}
	if inv == nil {
		return false
	}
	for _, f := range c.facts {
		if !f.Eval(inv) {
			return false
		}
	}
	return true
}

// canTie reports whether some request could match both a and b: no label key
// holds different values in the two.
func canTie(a, b *compiledGroup) bool {
	small, large := a.group.Selector, b.group.Selector
	if len(small) > len(large) {
		small, large = large, small
	}
	for k, v := range small {
		if w, ok := large[k]; ok && w != v {
			return false
		}
	}
	return true
}
