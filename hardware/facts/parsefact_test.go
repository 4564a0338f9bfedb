package facts

import "testing"

// TestParseFact: a term parses to a matchbox.FactTerm; a bad one gives an
// error and a nil FactTerm (not a nil Term in an interface).
func TestParseFact(t *testing.T) {
	if term, err := ParseFact("cpu.cores >= 2"); err != nil || term == nil {
		t.Errorf("ParseFact(cpu.cores >= 2) = %v, %v", term, err)
	}
	if term, err := ParseFact("cpu.cores >="); err == nil || term != nil {
		t.Errorf("ParseFact(cpu.cores >=) = %#v, %v; want nil and an error", term, err)
	}
}
