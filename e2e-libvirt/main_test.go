package e2elibvirt

import (
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"testing"
)

// TestMain runs the tests, or acts as a BMC's chassis_control program when
// the test binary is started as `BINARY chassis-control SOCKET ...` by
// ipmi_sim. A SIGINT or SIGTERM runs every registered cleanup before the
// process exits, so namespaces, daemons and VMs never outlive the run.
func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == chassisControlArg {
		os.Exit(chassisControlMain(os.Args[2], os.Args[3:]))
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sig
		fmt.Fprintf(os.Stderr, "e2e: %v: cleaning up\n", s)
		runAllCleanups()
		os.Exit(130)
	}()
	code := m.Run()
	runAllCleanups()
	printSummary()
	os.Exit(code)
}

// cleanupRegistry holds the cleanups of everything the tests created, for
// the signal handler: t.Cleanup does not run when the process is
// interrupted.
var cleanupRegistry struct {
	sync.Mutex
	next  int
	first int
	funcs map[int]func()
}

// addCleanup registers fn with t.Cleanup and with the signal handler; it
// runs once, whichever comes first.
func addCleanup(t testing.TB, fn func()) {
	var once sync.Once
	run := func() { once.Do(fn) }
	cleanupRegistry.Lock()
	if cleanupRegistry.funcs == nil {
		cleanupRegistry.funcs = map[int]func(){}
	}
	id := cleanupRegistry.next
	cleanupRegistry.next++
	cleanupRegistry.funcs[id] = run
	cleanupRegistry.Unlock()
	t.Cleanup(func() {
		run()
		cleanupRegistry.Lock()
		delete(cleanupRegistry.funcs, id)
		cleanupRegistry.Unlock()
	})
}

// addRunCleanup registers fn to run when the test process ends (or is
// interrupted), after every test.
func addRunCleanup(fn func()) {
	cleanupRegistry.Lock()
	defer cleanupRegistry.Unlock()
	if cleanupRegistry.funcs == nil {
		cleanupRegistry.funcs = map[int]func(){}
	}
	// Negative ids run last (cleanups run from the largest id down).
	cleanupRegistry.first--
	cleanupRegistry.funcs[cleanupRegistry.first] = fn
}

// runAllCleanups runs the registered cleanups, newest first.
func runAllCleanups() {
	cleanupRegistry.Lock()
	var ids []int
	for id := range cleanupRegistry.funcs {
		ids = append(ids, id)
	}
	funcs := cleanupRegistry.funcs
	cleanupRegistry.funcs = nil
	cleanupRegistry.Unlock()
	for i := len(ids) - 1; i >= 0; i-- {
		// ids come from a map: find the largest remaining each time.
		max := 0
		for j := range ids {
			if ids[j] > ids[max] {
				max = j
			}
		}
		funcs[ids[max]]()
		ids = append(ids[:max], ids[max+1:]...)
	}
}
