package store

import (
	"context"
	"testing"

	"matchbox/matchbox"
)

// TestCatalogStatementsPrepared: every catalog write (create, update,
// delete with and without a version, of every kind) runs a statement
// prepared once on the write connection.
func TestCatalogStatementsPrepared(t *testing.T) {
	s, _ := openTest(t)
	ctx := context.Background()
	objs := []*Object{
		profileObj("p"),
		groupObj("g", "p", map[string]string{"mac": "52:54:00:00:00:01"}),
		{Kind: matchbox.TemplateIgnition, Template: &matchbox.Template{Kind: matchbox.TemplateIgnition, Name: "c.ign", Content: `{"ignition":{"version":"3.3.0"}}`}},
		{Kind: matchbox.TemplateGeneric, Template: &matchbox.Template{Kind: matchbox.TemplateGeneric, Name: "g.txt", Content: "x"}},
	}
	write := func(what string, fn func(c CatalogTx) error) {
		t.Helper()
		if _, err := s.UpdateCatalog(ctx, fn); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	for _, o := range objs {
		write("create", func(c CatalogTx) error { _, err := c.Put(o, 0); return err })
	}
	first := s.catalogStmts.m
	distinct := map[string]bool{}
	for _, q := range catalogQueries() {
		distinct[q] = true
	}
	if len(first) != len(distinct) {
		t.Fatalf("%d statements prepared, want %d", len(first), len(distinct))
	}
	for _, o := range objs {
		write("update", func(c CatalogTx) error { _, err := c.Put(o, 1); return err })
	}
	for i := len(objs) - 1; i >= 0; i-- {
		o := objs[i]
		id, _, err := o.Encode()
		if err != nil {
			t.Fatal(err)
		}
		version := int64(0)
		if i%2 == 0 {
			version = 2
		}
		write("delete", func(c CatalogTx) error { return c.Delete(o.Kind, id, version) })
	}
	s.catalogStmts.mu.Lock()
	defer s.catalogStmts.mu.Unlock()
	if s.catalogStmts.unprepared != 0 {
		t.Errorf("%d catalog queries ran unprepared", s.catalogStmts.unprepared)
	}
	for q, st := range s.catalogStmts.m {
		if first[q] != st {
			t.Errorf("%q prepared again", q)
		}
	}
}
