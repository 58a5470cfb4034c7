# mlfleet — build, test, bench.
GO      ?= go
BIN     ?= bin
GOFLAGS ?=
export CGO_ENABLED ?= 0

BINARIES := mlfleet mlfleet-cloud mlfleet-edge mlfleet-scorer

.PHONY: all build test test-short bench fmt vet quickstart clean $(BINARIES)

all: build

build: $(BINARIES)

$(BINARIES):
	$(GO) build -trimpath -o $(BIN)/$@ ./cmd/$@

# The whole test suite, as CI runs it (needs the Debian packages .ci/run installs).
test: vet
	CGO_ENABLED=1 MLFLEET_REQUIRE_ONNX_TESTDATA=1 $(GO) test -race -count=1 -timeout 30m ./...

test-short:
	$(GO) test -count=1 ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem -count=1 ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...

# Start the cloud on embedded defaults and walk through the main flow with the CLI.
quickstart:
	./scripts/quickstart.sh

clean:
	rm -rf $(BIN)
