# matchbox: build, run and test.
GO ?= go
BIN := bin/matchbox
RUN_DIR := .run
# Stamped into the binaries (matchbox version).
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X matchbox/version.version=$(VERSION) -X matchbox/version.commit=$(COMMIT)

.PHONY: build run test test-short vet fuzz fuzz-long fuzz-corpus reliability bench e2e clean proto

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/matchbox
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/matchbox-agent ./cmd/matchbox-agent

# Serve the shipped defaults (profiles/, groups/) on http://127.0.0.1:8080
# with a SQLite database under .run/.
run:
	mkdir -p $(RUN_DIR)/assets/tftp
	$(GO) run ./cmd/matchbox serve --data-dir . --db $(RUN_DIR)/matchbox.db --agent-key-file $(RUN_DIR)/agent.key --assets-dir $(RUN_DIR)/assets --http-addr 127.0.0.1:8080

vet:
	test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

# The full suite: unit, integration (root: namespaces, ipmi_sim, QEMU) and
# end-to-end tests, with the race detector.
# Output as plain go test's (ok/FAIL lines, failing tests' output), then
# every skipped test with its reason (internal/testsummary). CI sets
# MATCHBOX_TEST_NO_SKIP=1: a test missing a prerequisite then fails.
# testsummary exits 1 on any failed test or package (sh has no pipefail).
test: vet
	$(GO) build -o bin/testsummary ./internal/testsummary
	$(GO) test -json -race -count=1 -timeout 60m ./... | bin/testsummary

test-short:
	$(GO) test -short -count=1 ./...

# Run each fuzz target for a while (FUZZTIME=30s by default), one at a time,
# with FUZZFLAGS added (e.g. -parallel=1). A target that fails does not stop
# the others; the exit status is 1 if any failed.
FUZZTIME ?= 30s
FUZZFLAGS ?=
fuzz:
	@fail=0; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list 'Fuzz.*' $$pkg | grep ^Fuzz); do \
	    echo "== $$pkg $$f $$(date -u +%FT%TZ)"; \
	    $(GO) test -run XXX -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $(FUZZFLAGS) $$pkg || { echo "== FAILED $$pkg $$f"; fail=1; }; \
	  done; \
	done; echo "== done $$(date -u +%FT%TZ)"; exit $$fail

# Every fuzz target for 10 minutes each, one at a time with one worker
# (about 10 minutes times the number of targets).
fuzz-long:
	$(MAKE) fuzz FUZZTIME=10m FUZZFLAGS=-parallel=1

# Copy the corpus the fuzzer built in Go's cache (the inputs that found new
# coverage) into each package's testdata/fuzz, where `go test` runs it as
# seeds and git keeps it.
fuzz-corpus:
	@cache=$$($(GO) env GOCACHE)/fuzz; for pkg in $$($(GO) list ./...); do \
	  dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
	  for f in $$($(GO) test -list 'Fuzz.*' $$pkg | grep ^Fuzz); do \
	    src=$$cache/$$pkg/$$f; [ -d $$src ] || continue; \
	    mkdir -p $$dir/testdata/fuzz/$$f && cp -n $$src/* $$dir/testdata/fuzz/$$f/ && \
	    echo "$$pkg $$f: $$(ls $$dir/testdata/fuzz/$$f | wc -l) inputs"; \
	  done; \
	done

# The long form of the crash, full-disk and boot-storm tests of reliability/
# (root: namespaces, mounts; at least 50 kills, a storm of 1,000 machines).
reliability:
	$(GO) test -count=1 -v -timeout 120m ./reliability/ -args -long

bench:
	$(GO) test -run XXX -bench . -benchmem ./matchbox/...
	bash bench/http.sh
	bash bench/tftp.sh
	bash bench/dhcp.sh

clean:
	rm -rf bin $(RUN_DIR)

# End-to-end: VMs with real firmware network-boot from matchbox serve on an
# isolated bridge (root; packages in e2e-libvirt/apt-packages).
# DRIVER=qemu|libvirt (or E2E_DRIVER) picks the VM driver: make e2e DRIVER=qemu
e2e:
	$(GO) test -v -count=1 -timeout 40m ./e2e-libvirt/ $(if $(DRIVER),-args -driver $(DRIVER))

# Regenerate the Go code of v0.11's gRPC API from api/rpc/proto (the .proto
# files are v0.11's, unchanged). Needs protoc (Debian: protobuf-compiler) and
# the plugins at the versions below; CI builds the committed code and needs
# none of them.
PROTOC_GEN_GO := google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
PROTOC_GEN_GO_GRPC := google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
PROTO_BIN := $(CURDIR)/bin/proto
PROTO_MAP := Mmatchbox/rpc/rpcpb/rpc.proto=matchbox/api/rpc/rpcpb,Mmatchbox/server/serverpb/messages.proto=matchbox/api/rpc/serverpb,Mmatchbox/storage/storagepb/storage.proto=matchbox/api/rpc/storagepb
proto:
	GOBIN=$(PROTO_BIN) $(GO) install $(PROTOC_GEN_GO)
	GOBIN=$(PROTO_BIN) $(GO) install $(PROTOC_GEN_GO_GRPC)
	cd api/rpc/proto && PATH=$(PROTO_BIN):$$PATH protoc -I . \
	  --go_out=$(CURDIR) --go_opt=module=matchbox,$(PROTO_MAP) \
	  --go-grpc_out=$(CURDIR) --go-grpc_opt=module=matchbox,$(PROTO_MAP) \
	  matchbox/storage/storagepb/storage.proto matchbox/server/serverpb/messages.proto matchbox/rpc/rpcpb/rpc.proto
