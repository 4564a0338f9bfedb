package matchbox

import (
	"slices"
	"text/template"
	"text/template/parse"
)

// VarRefs is the set of top-level variables a compiled template's parse
// tree names: the first element of each path TemplateRefs finds. A template
// that hands its whole data on (a bare {{.}} or $ where dot is the data,
// {{template "x" .}}, index . "k") or holds a node the walk does not know
// may read any variable: its refs use all. A nil *VarRefs uses all.
type VarRefs struct {
	all   bool
	names map[string]bool
}

// Uses reports whether a template with these refs may read variable name.
func (r *VarRefs) Uses(name string) bool {
	return r == nil || r.all || r.names[name]
}

// refsOf collects the variables the templates (and the templates they
// define) name. nil templates are skipped.
func refsOf(ts ...*template.Template) *VarRefs {
	r := &VarRefs{names: map[string]bool{}}
	for _, t := range ts {
		if t == nil {
			continue
		}
		if walkTemplate(t, false, func(path []string, _ bool) { r.names[path[0]] = true }) {
			r.all = true
		}
	}
	return r
}

// rangeElem stands, in a path reported with elems, for the element of the
// list before it: a range over .a reports a.rangeElem, a read of .b in its
// body a.rangeElem.b. It is no identifier, so no field is named so.
const rangeElem = "\x00[]"

// walkTemplate reports to add every variable path t (and the templates it
// defines) reads, with whether the read is guarded (see FieldRef). With
// elems, a range over a path and the fields of its element are reported
// too, through rangeElem; without, paths through a range's element are
// left out. It returns true when t may read any variable: it hands the
// whole data on or holds a node the walk does not know.
func walkTemplate(t *template.Template, elems bool, add func(path []string, guarded bool)) (all bool) {
	w := refWalker{add: add, elems: elems}
	for _, tt := range t.Templates() {
		if tt.Tree != nil {
			w.walk(tt.Tree.Root, []string{}, false)
		}
	}
	return w.all
}

// refWalker is the one walk of a template's parse tree: TemplateRefs and
// VarRefs are both read from it.
type refWalker struct {
	add func(path []string, guarded bool)
	// elems reports paths through a range's element (see walkTemplate).
	elems bool
	// all is set when the template may read any variable.
	all bool
}

// report hands path to add, unless it goes through a range's element and
// those are not asked for.
func (w *refWalker) report(path []string, guarded bool) {
	if w.elems || !slices.Contains(path, rangeElem) {
		w.add(path, guarded)
	}
}

// walk reports the fields node reads. dot is the path dot stands for
// (nil when unknown: a function's result; ending in rangeElem for a
// range's element), guarded
// whether node runs only under a condition.
func (w *refWalker) walk(node parse.Node, dot []string, guarded bool) {
	switch n := node.(type) {
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, c := range n.Nodes {
			w.walk(c, dot, guarded)
		}
	case *parse.ActionNode:
		w.pipe(n.Pipe, dot, guarded)
	case *parse.TemplateNode:
		w.pipe(n.Pipe, dot, guarded)
	case *parse.IfNode:
		w.pipe(n.Pipe, dot, guarded)
		w.walk(n.List, dot, true)
		w.walk(n.ElseList, dot, true)
	case *parse.WithNode:
		inner := w.pipe(n.Pipe, dot, guarded)
		w.walk(n.List, inner, true)
		w.walk(n.ElseList, dot, true)
	case *parse.RangeNode:
		var elem []string
		if list := w.pipe(n.Pipe, dot, guarded); list != nil {
			elem = append(append([]string{}, list...), rangeElem)
			w.report(elem, guarded)
		}
		w.walk(n.List, elem, true)
		w.walk(n.ElseList, dot, true)
	case *parse.TextNode, *parse.CommentNode, *parse.BreakNode, *parse.ContinueNode:
	default:
		// A node this walk does not know: assume it reads anything.
		w.all = true
	}
}

// pipe reports the fields a pipeline reads and returns the path of its
// value when that is a single field (what with and range move dot to), nil
// otherwise; a pipeline declaring variables moves dot only with elems.
func (w *refWalker) pipe(p *parse.PipeNode, dot []string, guarded bool) []string {
	if p == nil {
		return nil
	}
	var last []string
	for _, cmd := range p.Cmds {
		last = nil
		for _, a := range cmd.Args {
			last = w.arg(a, dot, guarded)
		}
		if len(cmd.Args) != 1 {
			last = nil
		}
	}
	if len(p.Decl) > 0 && !w.elems {
		return nil // the refs keep a declaring pipeline's dot unknown
	}
	return last
}

// arg reports the fields a command's argument reads and returns the path
// of its value (nil when it is not a variable of the data).
func (w *refWalker) arg(a parse.Node, dot []string, guarded bool) []string {
	switch a := a.(type) {
	case *parse.FieldNode:
		if dot == nil {
			return nil
		}
		path := append(append([]string{}, dot...), a.Ident...)
		w.report(path, guarded)
		return path
	case *parse.VariableNode:
		switch {
		case a.Ident[0] != "$":
			// A variable declared in the template: its value came from a
			// pipeline walked where it was declared.
			return nil
		case len(a.Ident) > 1:
			w.report(a.Ident[1:], guarded)
			return a.Ident[1:]
		default:
			w.all = true
			return []string{}
		}
	case *parse.DotNode:
		if dot != nil && len(dot) == 0 {
			w.all = true
		}
		return dot
	case *parse.PipeNode:
		return w.pipe(a, dot, guarded)
	case *parse.ChainNode:
		inner := w.arg(a.Node, dot, guarded)
		if inner == nil {
			return nil
		}
		path := append(append([]string{}, inner...), a.Field...)
		w.report(path, guarded)
		return path
	case *parse.IdentifierNode, *parse.StringNode, *parse.NumberNode, *parse.BoolNode, *parse.NilNode:
		return nil
	default:
		w.all = true
		return nil
	}
}
