package facts

import (
	"fmt"
	"math/big"
	"slices"
	"strconv"
	"strings"

	"matchbox/hardware"
	"matchbox/matchbox"
)

// Op is a comparison operator of a term.
type Op string

// Operators.
const (
	OpEq Op = "="  // equal; membership for set facts
	OpNe Op = "!=" // not equal; absence for set facts
	OpLt Op = "<"  // less than (numbers)
	OpLe Op = "<=" // less than or equal (numbers)
	OpGt Op = ">"  // greater than (numbers)
	OpGe Op = ">=" // greater than or equal (numbers)
	OpIn Op = "in" // equal to any listed value; any present for set facts
)

// value is one parsed operand: a number, a string or a boolean, as the
// fact's type says.
type value struct {
	num uint64
	str string
	b   bool
}

// Term is one parsed hardware-fact selector term. The zero Term matches
// nothing. Terms are immutable and safe for concurrent use.
type Term struct {
	fact   Fact
	op     Op
	values []value // exactly one unless op is OpIn; sorted, distinct for OpIn
}

// SyntaxError is a term that could not be parsed: what was expected at a
// byte position and what was found there.
type SyntaxError struct {
	// Pos is the 1-based byte position in the expression.
	Pos int
	// Expected says what would have been valid there.
	Expected string
	// Got is what was found, quoted, or "end of input".
	Got string
}

// Error implements error as "position N: expected X, got Y".
func (e *SyntaxError) Error() string {
	return fmt.Sprintf("position %d: expected %s, got %s", e.Pos, e.Expected, e.Got)
}

// UnknownFactError is a term naming a fact that is not in the namespace.
type UnknownFactError struct {
	// Pos is the 1-based byte position of the name.
	Pos int
	// Name is the unknown name.
	Name string
	// Suggestions are the closest fact names, nearest first; empty when
	// none is close.
	Suggestions []string
}

// Error implements error, naming close facts or, when none is close, all.
func (e *UnknownFactError) Error() string {
	if len(e.Suggestions) > 0 {
		return fmt.Sprintf("position %d: unknown fact %q; did you mean %s?",
			e.Pos, e.Name, strings.Join(e.Suggestions, ", "))
	}
	return fmt.Sprintf("position %d: unknown fact %q; known facts: %s",
		e.Pos, e.Name, strings.Join(Names(), ", "))
}

// maxNumberLen bounds the digits of a number (uint64 has 20).
const maxNumberLen = 40

// ParseFact is Parse as a matchbox.FactParser, the parser of groups'
// hardware-fact terms (a failed parse returns a nil FactTerm).
func ParseFact(expr string) (matchbox.FactTerm, error) {
	t, err := Parse(expr)
	if err != nil {
		return nil, err
	}
	return t, nil
}

// Parse parses one term such as `memory.bytes >= 64GiB` or
// `system.product in ("R640", "R650")`. Its errors are *SyntaxError or
// *UnknownFactError.
func Parse(expr string) (Term, error) {
	p := parser{s: expr}
	return p.term()
}

type parser struct {
	s   string
	pos int
}

func (p *parser) skipSpace() {
	for p.pos < len(p.s) && isSpace(p.s[p.pos]) {
		p.pos++
	}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func isNameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-'
}

// got describes the input at pos for an error message: the next word or
// character, quoted, or "end of input".
func (p *parser) got(pos int) string {
	if pos >= len(p.s) {
		return "end of input"
	}
	end := pos
	for end < len(p.s) && !isSpace(p.s[end]) && end-pos < 20 {
		end++
	}
	if end == pos {
		end = pos + 1
	}
	return strconv.Quote(p.s[pos:end])
}

func (p *parser) expected(pos int, what string) error {
	return &SyntaxError{Pos: pos + 1, Expected: what, Got: p.got(pos)}
}

func (p *parser) term() (Term, error) {
	p.skipSpace()
	start := p.pos
	for p.pos < len(p.s) && isNameByte(p.s[p.pos]) {
		p.pos++
	}
	name := p.s[start:p.pos]
	if name == "" {
		return Term{}, p.expected(start, "a fact name")
	}
	f, ok := Lookup(name)
	if !ok {
		return Term{}, &UnknownFactError{Pos: start + 1, Name: name, Suggestions: closeNames(name)}
	}
	p.skipSpace()
	opPos := p.pos
	op, err := p.op()
	if err != nil {
		return Term{}, err
	}
	if !applies(f.Type, op) {
		return Term{}, &SyntaxError{Pos: opPos + 1, Got: strconv.Quote(string(op)),
			Expected: fmt.Sprintf("%s for the %s fact %s", allowedOps(f.Type), f.Type, f.Name)}
	}
	t := Term{fact: f, op: op}
	if op == OpIn {
		vals, err := p.list(f)
		if err != nil {
			return Term{}, err
		}
		t.values = vals
	} else {
		v, err := p.value(f, false)
		if err != nil {
			return Term{}, err
		}
		t.values = []value{v}
	}
	p.skipSpace()
	if p.pos < len(p.s) {
		return Term{}, p.expected(p.pos, "end of input")
	}
	return t, nil
}

func (p *parser) op() (Op, error) {
	rest := p.s[p.pos:]
	if strings.HasPrefix(rest, "in") && (len(rest) == 2 || isSpace(rest[2]) || rest[2] == '(') {
		p.pos += 2
		return OpIn, nil
	}
	for _, op := range []Op{OpNe, OpLe, OpGe, OpEq, OpLt, OpGt} {
		if strings.HasPrefix(rest, string(op)) {
			if op == OpEq && strings.HasPrefix(rest, "==") {
				break
			}
			p.pos += len(op)
			return op, nil
		}
	}
	return "", p.expected(p.pos, "an operator (=, !=, <, <=, >, >=, in)")
}

func applies(t Type, op Op) bool {
	switch op {
	case OpEq, OpNe:
		return true
	case OpIn:
		return t != TypeBool
	default:
		return t.numeric()
	}
}

func allowedOps(t Type) string {
	switch {
	case t == TypeBool:
		return "= or !="
	case t.numeric():
		return "=, !=, <, <=, >, >= or in"
	default:
		return "=, != or in"
	}
}

// list parses `( value {, value} )` and returns the values sorted and
// without duplicates.
func (p *parser) list(f Fact) ([]value, error) {
	p.skipSpace()
	if p.pos >= len(p.s) || p.s[p.pos] != '(' {
		return nil, p.expected(p.pos, `"(" to open the list`)
	}
	p.pos++
	var vals []value
	for {
		v, err := p.value(f, true)
		if err != nil {
			return nil, err
		}
		vals = append(vals, v)
		p.skipSpace()
		if p.pos < len(p.s) && p.s[p.pos] == ',' {
			p.pos++
			continue
		}
		if p.pos < len(p.s) && p.s[p.pos] == ')' {
			p.pos++
			break
		}
		return nil, p.expected(p.pos, `"," or ")"`)
	}
	cmp := func(a, b value) int {
		if f.Type.numeric() {
			switch {
			case a.num < b.num:
				return -1
			case a.num > b.num:
				return 1
			}
			return 0
		}
		return strings.Compare(a.str, b.str)
	}
	slices.SortFunc(vals, cmp)
	return slices.CompactFunc(vals, func(a, b value) bool { return cmp(a, b) == 0 }), nil
}

// value parses one operand for fact f. A bare value inside a list stops at
// "," or ")"; outside a list it runs to the end of the input.
func (p *parser) value(f Fact, inList bool) (value, error) {
	p.skipSpace()
	start := p.pos
	if p.pos >= len(p.s) || strings.IndexByte("(),", p.s[p.pos]) >= 0 {
		return value{}, p.expected(p.pos, expectedValue(f))
	}
	if p.s[p.pos] == '"' {
		s, err := p.quoted()
		if err != nil {
			return value{}, err
		}
		if f.Type != TypeString && f.Type != TypeSet {
			return value{}, &SyntaxError{Pos: start + 1, Expected: expectedValue(f), Got: strconv.Quote(p.s[start:p.pos])}
		}
		return value{str: s}, nil
	}
	end := len(p.s)
	if inList {
		if i := strings.IndexAny(p.s[p.pos:], ",)"); i >= 0 {
			end = p.pos + i
		}
	}
	word := strings.TrimRight(p.s[p.pos:end], " \t\r\n")
	p.pos += len(word)
	bad := func() error {
		return &SyntaxError{Pos: start + 1, Expected: expectedValue(f), Got: strconv.Quote(word)}
	}
	switch f.Type {
	case TypeString, TypeSet:
		return value{str: word}, nil
	case TypeBool:
		switch strings.ToLower(word) {
		case "true":
			return value{b: true}, nil
		case "false":
			return value{b: false}, nil
		}
		return value{}, bad()
	default:
		n, frac, ok := parseNumber(word, f.Type)
		if frac != nil {
			// A number and unit that give no whole number: say so
			// instead of calling the unit wrong.
			base := "bytes"
			if f.Type == TypeSpeed {
				base = "Mbps"
			}
			return value{}, &SyntaxError{Pos: start + 1, Got: strconv.Quote(word),
				Expected: fmt.Sprintf("a whole number of %s (%s is %s %s; round it, or use a unit that divides it)", base, word, frac.FloatString(3), base)}
		}
		if !ok {
			return value{}, bad()
		}
		return value{num: n}, nil
	}
}

// quoted scans a Go-style double-quoted string at p.pos.
func (p *parser) quoted() (string, error) {
	start := p.pos
	i := p.pos + 1
	for i < len(p.s) && p.s[i] != '"' {
		if p.s[i] == '\\' {
			i++
		}
		i++
	}
	if i >= len(p.s) {
		return "", &SyntaxError{Pos: start + 1, Expected: "a closing quote", Got: "end of input"}
	}
	lit := p.s[start : i+1]
	s, err := strconv.Unquote(lit)
	if err != nil {
		return "", &SyntaxError{Pos: start + 1, Expected: `a string with valid escapes (\", \\, \n, \xFF, \u00e9)`, Got: strconv.Quote(lit)}
	}
	p.pos = i + 1
	return s, nil
}

func expectedValue(f Fact) string {
	switch f.Type {
	case TypeBool:
		return "true or false"
	case TypeCount:
		return "a whole number"
	case TypeBytes:
		return "a number with an optional unit (B, KB, MB, GB, TB, PB, KiB, MiB, GiB, TiB, PiB)"
	case TypeSpeed:
		return "a number with an optional unit (Mbps, Gbps, Tbps)"
	default:
		return "a value (a bare word or a quoted string)"
	}
}

// unitScale returns the multiplier of a unit for a fact type; "" is 1.
func unitScale(t Type, unit string) (uint64, bool) {
	u := strings.ToLower(unit)
	if u == "" {
		return 1, true
	}
	switch t {
	case TypeBytes:
		switch u {
		case "b":
			return 1, true
		case "kb":
			return 1e3, true
		case "mb":
			return 1e6, true
		case "gb":
			return 1e9, true
		case "tb":
			return 1e12, true
		case "pb":
			return 1e15, true
		case "kib":
			return 1 << 10, true
		case "mib":
			return 1 << 20, true
		case "gib":
			return 1 << 30, true
		case "tib":
			return 1 << 40, true
		case "pib":
			return 1 << 50, true
		}
	case TypeSpeed:
		switch u {
		case "mbps":
			return 1, true
		case "gbps":
			return 1e3, true
		case "tbps":
			return 1e6, true
		}
	}
	return 0, false
}

// parseNumber parses "64", "64GiB", "1.5 TB" or "25Gbps" for a numeric
// fact type. The result must be a whole number that fits in a uint64; a
// valid number and unit whose product is not whole (1.3TiB) is returned as
// frac, with ok false.
func parseNumber(word string, t Type) (n uint64, frac *big.Rat, ok bool) {
	i := 0
	for i < len(word) && (word[i] >= '0' && word[i] <= '9' || word[i] == '.') {
		i++
	}
	num, unit := word[:i], strings.TrimLeft(word[i:], " \t")
	if num == "" || len(num) > maxNumberLen || num[0] == '.' || num[len(num)-1] == '.' || strings.Count(num, ".") > 1 {
		return 0, nil, false
	}
	if t == TypeCount && (unit != "" || strings.Contains(num, ".")) {
		return 0, nil, false
	}
	scale, ok := unitScale(t, unit)
	if !ok {
		return 0, nil, false
	}
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return 0, nil, false
	}
	r.Mul(r, new(big.Rat).SetUint64(scale))
	if !r.IsInt() {
		return 0, r, false
	}
	if !r.Num().IsUint64() {
		return 0, nil, false
	}
	return r.Num().Uint64(), nil, true
}

// formatNumber writes a number in the unit that divides it exactly with the
// smallest mantissa: 64GB, 64GiB, 1000KiB, 25Gbps, 1500B.
func formatNumber(n uint64, t Type) string {
	type unit struct {
		name  string
		scale uint64
	}
	var units []unit
	switch t {
	case TypeBytes:
		if n == 0 {
			return "0B"
		}
		units = []unit{{"PiB", 1 << 50}, {"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
			{"PB", 1e15}, {"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1}}
	case TypeSpeed:
		if n == 0 {
			return "0Mbps"
		}
		units = []unit{{"Tbps", 1e6}, {"Gbps", 1e3}, {"Mbps", 1}}
	default:
		return strconv.FormatUint(n, 10)
	}
	// The exact unit with the smallest mantissa wins; on a tie the earlier
	// (binary) unit.
	best := units[len(units)-1]
	for _, u := range units {
		if n%u.scale == 0 && n/u.scale < n/best.scale {
			best = u
		}
	}
	return strconv.FormatUint(n/best.scale, 10) + best.name
}

func (t Term) formatValue(v value) string {
	switch {
	case t.fact.Type == TypeBool:
		return strconv.FormatBool(v.b)
	case t.fact.Type.numeric():
		return formatNumber(v.num, t.fact.Type)
	default:
		return strconv.Quote(v.str)
	}
}

// String returns the canonical form of the term: one space around the
// operator, strings quoted, numbers in the largest exact unit, in lists
// sorted and without duplicates. Two terms select the same machines when
// their canonical forms are equal, so groups compare selectors by it.
func (t Term) String() string {
	if t.fact.Name == "" {
		return ""
	}
	if t.op == OpIn {
		parts := make([]string, len(t.values))
		for i, v := range t.values {
			parts[i] = t.formatValue(v)
		}
		return t.fact.Name + " in (" + strings.Join(parts, ", ") + ")"
	}
	return t.fact.Name + " " + string(t.op) + " " + t.formatValue(t.values[0])
}

// Key returns the name of the fact the term tests, e.g. "memory.bytes".
func (t Term) Key() string { return t.fact.Name }

// Op returns the term's operator.
func (t Term) Op() Op { return t.op }

// Equal reports whether two terms have the same canonical form.
func (t Term) Equal(o Term) bool { return t.String() == o.String() }

// Eval reports whether the inventory satisfies the term. A nil inventory
// (a machine that has not reported one) satisfies no term, and neither
// does an inventory that lacks the fact (see the package documentation).
func (t Term) Eval(inv *hardware.Inventory) bool {
	if inv == nil || t.fact.Name == "" {
		return false
	}
	f := t.fact
	switch {
	case f.Type == TypeBool:
		got := f.flag(inv)
		return (got == t.values[0].b) == (t.op == OpEq)
	case f.Type.numeric():
		got, ok := f.num(inv)
		if !ok {
			return false
		}
		return compareNum(got, t.op, t.values)
	case f.Type == TypeSet:
		var members []string
		for _, s := range f.set(inv) {
			if s != "" {
				members = append(members, s)
			}
		}
		if len(members) == 0 {
			return false
		}
		found := false
		for _, v := range t.values {
			if slices.Contains(members, v.str) {
				found = true
				break
			}
		}
		if t.op == OpNe {
			return !found
		}
		return found
	default:
		got, ok := f.str(inv)
		if !ok {
			return false
		}
		eq := false
		for _, v := range t.values {
			if got == v.str {
				eq = true
				break
			}
		}
		if t.op == OpNe {
			return !eq
		}
		return eq
	}
}

func compareNum(got uint64, op Op, vals []value) bool {
	want := vals[0].num
	switch op {
	case OpEq:
		return got == want
	case OpNe:
		return got != want
	case OpLt:
		return got < want
	case OpLe:
		return got <= want
	case OpGt:
		return got > want
	case OpGe:
		return got >= want
	case OpIn:
		for _, v := range vals {
			if got == v.num {
				return true
			}
		}
	}
	return false
}
