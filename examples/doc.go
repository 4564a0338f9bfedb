// Package examples holds complete matchbox data directories, one per
// folder (flatcar-etcd3, fcos-install, rack-hardware, matchbox-compat), and
// the test that loads, validates and renders each of them through the boot
// endpoints.
package examples
