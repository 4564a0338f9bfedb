package main

import (
	"matchbox/hardware/facts"
	"matchbox/matchbox"
)

// parseFact parses the hardware-fact terms of groups.
func parseFact(expr string) (matchbox.FactTerm, error) {
	t, err := facts.Parse(expr)
	if err != nil {
		return nil, err
	}
	return t, nil
}
