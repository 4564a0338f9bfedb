package matchbox

import (
	"text/template"
	"text/template/parse"
)

// VarRefs is the set of top-level variables a compiled template's parse
// tree names ({{.name}}, {{$.name}}, .name inside with and range, taken
// as top-level too). A template that hands its whole data on (a bare
// {{.}} or $, {{template "x" .}}, index . "k") may read any variable: its
// refs use all. A nil *VarRefs uses all.
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
		for _, d := range t.Templates() {
			if d.Tree != nil {
				r.walk(d.Tree.Root)
			}
		}
	}
	return r
}

func (r *VarRefs) walk(n parse.Node) {
	if r.all || n == nil {
		return
	}
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, c := range n.Nodes {
			r.walk(c)
		}
	case *parse.ActionNode:
		r.walk(n.Pipe)
	case *parse.PipeNode:
		if n == nil {
			return
		}
		for _, c := range n.Cmds {
			r.walk(c)
		}
	case *parse.CommandNode:
		for _, a := range n.Args {
			r.walk(a)
		}
	case *parse.FieldNode:
		r.names[n.Ident[0]] = true
	case *parse.VariableNode:
		switch {
		case n.Ident[0] != "$":
			// A variable declared in the template: its value came from a
			// pipeline walked where it was declared.
		case len(n.Ident) > 1:
			r.names[n.Ident[1]] = true
		default:
			r.all = true
		}
	case *parse.DotNode:
		r.all = true
	case *parse.ChainNode:
		r.walk(n.Node)
	case *parse.IfNode:
		r.branch(&n.BranchNode)
	case *parse.RangeNode:
		r.branch(&n.BranchNode)
	case *parse.WithNode:
		r.branch(&n.BranchNode)
	case *parse.TemplateNode:
		r.walk(n.Pipe)
	case *parse.TextNode, *parse.CommentNode, *parse.BoolNode, *parse.NumberNode,
		*parse.StringNode, *parse.NilNode, *parse.IdentifierNode, *parse.BreakNode, *parse.ContinueNode:
	default:
		// A node this walk does not know: assume it reads anything.
		r.all = true
	}
}

func (r *VarRefs) branch(b *parse.BranchNode) {
	r.walk(b.Pipe)
	r.walk(b.List)
	r.walk(b.ElseList)
}
