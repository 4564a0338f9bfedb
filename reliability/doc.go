// Package reliability holds the tests of matchbox's promises under crashes,
// full disks and load, run against the real matchbox binary: kill -9 during
// DHCP churn with real clients in network namespaces and during concurrent
// API writes, a full and a read-only database, and a boot storm of
// simulated machines. `make test` runs them in a short form; `make
// reliability` (go test ./reliability -args -long) in a long one. See
// docs/reliability.md.
package reliability
