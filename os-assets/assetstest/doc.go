// Package assetstest tests the OS-asset scripts of os-assets/ (get-flatcar,
// get-fedora-coreos) offline: a local HTTP server serves a fake release tree
// with valid and tampered files, and the tests check that the scripts
// install what verifies, delete and refuse what does not, skip what is
// already verified, resume partial downloads and fetch nothing on --dry-run.
package assetstest
