package e2elibvirt

import (
	"context"
	"sync"
	"testing"
	"time"
)

// withMACs returns copies of specs with the MACs of scenario number s.
func withMACs(s int, specs []vmSpec) []vmSpec {
	out := append([]vmSpec(nil), specs...)
	for i := range out {
		out[i].MAC = macFor(s, i)
	}
	return out
}

// nodesOf lists the data-directory nodes of specs.
func nodesOf(specs []vmSpec) []node {
	var nodes []node
	for _, s := range specs {
		nodes = append(nodes, node{Name: s.Name, MAC: s.MAC})
	}
	return nodes
}

// bootAll defines specs in l, gives each a BMC, and boots each in a
// parallel subtest (go test's -parallel, 2 by default here, bounds the VMs
// running at once) through its BMC, then runs check. Each boot's time is
// recorded under scenario/NAME.
func bootAll(t *testing.T, l *lab, scenario string, specs []vmSpec, check func(t *testing.T, spec vmSpec)) {
	t.Helper()
	for _, spec := range specs {
		m := l.Driver.Define(t, spec)
		b := startBMC(t, l, m)
		t.Run(spec.Name, func(t *testing.T) {
			t.Parallel()
			host := spec.Hostname
			if host == "" {
				host = spec.Name
			}
			res := bootThroughBMC(context.Background(), t, b, m, host)
			recordBoot(scenario, spec.Name, l.Driver.Name(), res)
			if check != nil {
				check(t, spec)
			}
		})
	}
}

// boots are the measured boots of the run, by scenario/VM name.
var boots struct {
	sync.Mutex
	m map[string]bootResult
}

// recordBoot keeps a boot's times for the summary and the baseline ratio.
func recordBoot(scenario, vm, driver string, res bootResult) {
	boots.Lock()
	if boots.m == nil {
		boots.m = map[string]bootResult{}
	}
	boots.m[scenario+"/"+vm] = res
	boots.Unlock()
	record("%-30s %-7s config %5.1fs  power-off %5.1fs", scenario+"/"+vm, driver, res.Config.Seconds(), res.Total.Seconds())
}

// bootTime returns the recorded config time of scenario/vm.
func bootTime(scenario, vm string) (time.Duration, bool) {
	boots.Lock()
	defer boots.Unlock()
	r, ok := boots.m[scenario+"/"+vm]
	return r.Config, ok
}
