#!/usr/bin/env bash
# crane_compare.sh: time crane (go-containerregistry's CLI) pushing the same
# layers the mlfleet image builder pushes, for a side-by-side figure.
#
# Usage:
#   crane_compare.sh REGISTRY LAYER.tar[.gz]...
#       REGISTRY is host:port of a plain-HTTP registry. Times
#       1. crane append -o (build an image tarball locally),
#       2. crane push of that tarball,
#       3. crane append -t (build and push in one go).
#   crane_compare.sh --self
#       starts `crane registry serve` on a free loopback port, exports the
#       layers of a 1-platform image (8 MB scorer, ${IMAGEBUILD_MODEL_MB:-100}
#       MB random model, manifest) with the package's BenchmarkCraneCompare, times
#       imagebuild.Build pushing them, then times crane as above.
#
# crane is installed at v0.22.1 into a temporary GOBIN unless $CRANE names
# a crane binary.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
serve_pid=""
cleanup() {
	if [[ -n "$serve_pid" ]]; then kill "$serve_pid" 2>/dev/null || true; fi
	rm -rf "$work"
}
trap cleanup EXIT

if [[ -z "${CRANE:-}" ]]; then
	echo "installing crane v0.22.1 into $work/bin" >&2
	(cd "$work" && GOFLAGS= GOBIN="$work/bin" go install github.com/google/go-containerregistry/cmd/crane@v0.22.1)
	CRANE="$work/bin/crane"
fi

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fs", b - a }'; }

# start_registry starts an empty in-memory crane registry on a free
# loopback port and sets $registry.
start_registry() {
	stop_registry
	: >"$work/serve.log"
	"$CRANE" registry serve --address 127.0.0.1:0 >"$work/serve.log" 2>&1 &
	serve_pid=$!
	local port=""
	for _ in $(seq 1 100); do
		port=$(sed -n 's/.*serving on port \([0-9]*\).*/\1/p' "$work/serve.log")
		[[ -n "$port" ]] && break
		sleep 0.1
	done
	[[ -n "$port" ]] || { echo "crane registry did not start" >&2; cat "$work/serve.log" >&2; exit 1; }
	registry="127.0.0.1:$port"
}
stop_registry() {
	if [[ -n "$serve_pid" ]]; then
		kill "$serve_pid" 2>/dev/null || true
		wait "$serve_pid" 2>/dev/null || true
		serve_pid=""
	fi
}

self=false
if [[ "${1:-}" == "--self" ]]; then
	self=true
	start_registry
	mkdir -p "$work/layers"
	(cd "$here" && IMAGEBUILD_EXPORT_DIR="$work/layers" IMAGEBUILD_REGISTRY="$registry" \
		go test -count=1 -run '^$' -bench '^BenchmarkCraneCompare$' -benchtime 1x . -v | grep -E '^(MLFLEET|--- FAIL|FAIL)' || true)
	set -- "$registry" "$work"/layers/*.tar
fi

[[ $# -ge 2 ]] || { sed -n '2,20p' "$0" >&2; exit 2; }
registry=$1
shift
flags=()
for l in "$@"; do flags+=(-f "$l"); done
echo "layers: $(du -ch "$@" | tail -1 | cut -f1) in $# tarballs" >&2
# With a registry of our own, each measurement starts from an empty one;
# with a given registry, blobs pushed by an earlier step are skipped.

if $self; then start_registry; fi
t0=$(now)
"$CRANE" append --insecure --oci-empty-base "${flags[@]}" -t "$registry/crane-compare/img:local" -o "$work/image.tar" 2>/dev/null
t1=$(now)
"$CRANE" push --insecure "$work/image.tar" "$registry/crane-compare/img:v1" >/dev/null 2>&1
t2=$(now)
if $self; then start_registry; fi
t3=$(now)
"$CRANE" append --insecure --oci-empty-base "${flags[@]}" -t "$registry/crane-compare/direct:v1" >/dev/null 2>&1
t4=$(now)
echo "CRANE append -o (local build):   $(elapsed "$t0" "$t1")"
echo "CRANE push (upload the tarball): $(elapsed "$t1" "$t2")"
echo "CRANE append -t (build + push):  $(elapsed "$t3" "$t4")"
