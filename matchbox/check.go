package matchbox

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strings"
	"text/template"

	"matchbox/matchbox/ignition"
)

// samplePlaceholder is the value a template's variables get when it is
// rendered with sample data to be checked.
const samplePlaceholder = "matchbox-sample-value"

// TemplateError is a template refused when written, at a line of its text
// when known (0 otherwise).
type TemplateError struct {
	Kind TemplateKind
	Name string
	Line int
	Err  error
}

func (e *TemplateError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s template %q: line %d: %v", e.Kind, e.Name, e.Line, e.Err)
	}
	return fmt.Sprintf("%s template %q: %v", e.Kind, e.Name, e.Err)
}

func (e *TemplateError) Unwrap() error { return e.Err }

// CheckTemplate is the check of a template when it is written (not when a
// stored catalog is loaded): a Butane template is rendered with sample data,
// a placeholder for every variable it reads, and translated in Butane's
// strict mode, so that unknown keys, local files without a files directory
// and Container Linux Configs are refused before any machine boots. Findings
// on lines that hold a sample value are not counted (the real value may well
// be a number). A template that cannot be rendered with sample data (it
// compares values, say) is left to the parse check Build makes.
func CheckTemplate(t *Template) error {
	if t.Kind != TemplateIgnition || ignition.IsIgnitionName(t.Name) {
		return nil
	}
	parsed, err := template.New(t.Name).Option("missingkey=error").Parse(t.Content)
	if err != nil {
		return &TemplateError{Kind: t.Kind, Name: t.Name, Err: err}
	}
	var buf bytes.Buffer
	if err := parsed.Execute(&buf, SampleData(parsed)); err != nil {
		return nil
	}
	lines := strings.Split(buf.String(), "\n")
	sameShape := len(lines) == len(strings.Split(t.Content, "\n"))
	err = ignition.CheckButane(buf.Bytes(), func(line int) bool {
		return line <= len(lines) && strings.Contains(lines[line-1], samplePlaceholder)
	})
	var se *ignition.StrictError
	if !errors.As(err, &se) {
		return err
	}
	first := se.Problems[0]
	if sameShape {
		return &TemplateError{Kind: t.Kind, Name: t.Name, Line: first.Line, Err: se}
	}
	// Ranges changed the number of lines: quote the rendered line instead.
	if first.Line > 0 && first.Line <= len(lines) {
		return &TemplateError{Kind: t.Kind, Name: t.Name, Err: fmt.Errorf("%w (rendered with sample data, at %q)", se, strings.TrimSpace(lines[first.Line-1]))}
	}
	return &TemplateError{Kind: t.Kind, Name: t.Name, Err: se}
}

// TemplateFields returns the top-level variables a parsed template reads
// (".ssh_keys", ".request" ...), sorted.
func TemplateFields(t *template.Template) []string {
	root := sampleTree(t)
	out := make([]string, 0, len(root.children))
	for k := range root.children {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// SampleData returns data that lets a template execute with missingkey=error:
// every variable it reads, nested as it reads them, holding a placeholder
// string (or a list of one element for ranges).
func SampleData(t *template.Template) map[string]any {
	root := sampleTree(t)
	m, _ := root.value().(map[string]any)
	if m == nil {
		m = map[string]any{}
	}
	return m
}

type sampleNode struct {
	children map[string]*sampleNode
	list     bool
}

func (n *sampleNode) child(name string) *sampleNode {
	if n.children == nil {
		n.children = map[string]*sampleNode{}
	}
	c, ok := n.children[name]
	if !ok {
		c = &sampleNode{}
		n.children[name] = c
	}
	return c
}

func (n *sampleNode) path(idents []string) *sampleNode {
	for _, id := range idents {
		n = n.child(id)
	}
	return n
}

func (n *sampleNode) value() any {
	var v any = samplePlaceholder
	if len(n.children) > 0 {
		m := make(map[string]any, len(n.children))
		for k, c := range n.children {
			m[k] = c.value()
		}
		v = m
	}
	if n.list {
		return []any{v}
	}
	return v
}

// sampleTree returns the variables t (and the templates it defines)
// reads, nested as it reads them, lists where it ranges over them.
func sampleTree(t *template.Template) sampleNode {
	root := sampleNode{}
	walkTemplate(t, true, func(path []string, _ bool) {
		n := &root
		for _, seg := range path {
			if seg == rangeElem {
				// Fields of a one-element list's element hang from
				// the list's node.
				n.list = true
				continue
			}
			n = n.child(seg)
		}
	})
	return root
}
