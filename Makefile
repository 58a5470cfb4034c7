# mlfleet — build, test, bench.
GO      ?= go
BIN     ?= bin
GOFLAGS ?=
export CGO_ENABLED ?= 0

BINARIES := mlfleet mlfleet-cloud mlfleet-edge mlfleet-scorer

.PHONY: all build scorers test test-short bench bench-ort bench-crane fmt vet quickstart demo demo-down clean $(BINARIES)

all: build

build: $(BINARIES) scorers

$(BINARIES):
	$(GO) build -trimpath -o $(BIN)/$@ ./cmd/$@

# The scorer for every image platform, where mlfleet-cloud looks for them
# (bin/scorers beside bin/mlfleet-cloud): static, stripped.
scorers:
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -ldflags='-s -w' -o $(BIN)/scorers/linux-amd64/mlfleet-scorer ./cmd/mlfleet-scorer
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -trimpath -ldflags='-s -w' -o $(BIN)/scorers/linux-arm64/mlfleet-scorer ./cmd/mlfleet-scorer
	CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=7 $(GO) build -trimpath -ldflags='-s -w' -o $(BIN)/scorers/linux-arm-v7/mlfleet-scorer ./cmd/mlfleet-scorer
	@ls -l $(BIN)/scorers/*/mlfleet-scorer | awk '{printf "scorer %s: %.1f MB\n", $$9, $$5/1048576}'

# The whole test suite, as CI runs it (needs the Debian packages .ci/run installs).
test: vet
	CGO_ENABLED=1 MLFLEET_REQUIRE_ONNX_TESTDATA=1 $(GO) test -race -count=1 -timeout 30m ./...

test-short:
	$(GO) test -count=1 ./...

# Every benchmark, then the side-by-side comparisons: the ONNX engine beside
# onnxruntime, and the image builder beside crane append + crane push.
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count=1 -timeout 60m $$($(GO) list ./... | grep -v /examples/ortbench)
	$(MAKE) --no-print-directory bench-ort bench-crane

bench-crane:
	bash cloud/internal/imagebuild/testdata/crane_compare.sh --self

# The ONNX engine beside onnxruntime (cgo, through npm's onnxruntime-node CPU
# library), one thread each, printed side by side.
bench-ort:
	CGO_ENABLED=1 MLFLEET_ORT_LIB=$$(bash examples/ortbench/setup.sh) $(GO) test -tags ort -run '^$$' -bench . -benchmem -count=1 ./examples/ortbench/

fmt:
	gofmt -w $$(git ls-files '*.go')

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...

# Start the cloud on embedded defaults and walk through the main flow with the CLI.
quickstart:
	./scripts/quickstart.sh

# The whole product on this machine: cloud, one edge device on containerd,
# images v1 and v2, a service rolled out to v1 then v2, scoring with curl.
demo:
	./scripts/demo.sh up

demo-down:
	./scripts/demo.sh down

clean:
	rm -rf $(BIN)
