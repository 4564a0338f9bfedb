// Package compat holds the tests that hold this server's gRPC API to
// matchbox v0.11's own code: its descriptors and its client package.
//
// v0.11's generated packages register the same protobuf names as
// matchbox/api/rpc/..., and a process may register each name once, so the
// tests here never link those packages: they read the committed generated
// code as source and talk to a `matchbox serve` process.
package compat
