#!/usr/bin/env bash
# Installs the CPU onnxruntime shared library that npm's onnxruntime-node
# package ships, outside the repository, and prints its path on stdout.
# Idempotent: a second run only prints the path.
#
#   MLFLEET_ORT_LIB=$(bash examples/ortbench/setup.sh)
#
# Environment: ORT_CACHE_DIR (default $HOME/.cache/mlfleet/ort),
# ORT_NODE_VERSION (default 1.30.0).
set -euo pipefail

version="${ORT_NODE_VERSION:-1.30.0}"
dir="${ORT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mlfleet/ort}/onnxruntime-node-$version"

find_lib() {
	find "$dir/node_modules/onnxruntime-node/bin" -path '*/linux/x64/*' -name 'libonnxruntime.so.1*' -type f 2>/dev/null | sort | head -n 1 || true
}

lib="$(find_lib)"
if [ -z "$lib" ]; then
	command -v npm >/dev/null || { echo "setup.sh: npm is not installed" >&2; exit 1; }
	mkdir -p "$dir"
	# --ignore-scripts: the package's install script would download the GPU
	# build; the CPU library is in the package itself.
	npm install --prefix "$dir" --no-save --no-audit --no-fund --ignore-scripts \
		"onnxruntime-node@$version" >&2
	lib="$(find_lib)"
fi
if [ -z "$lib" ]; then
	echo "setup.sh: no libonnxruntime.so.1* under $dir/node_modules/onnxruntime-node/bin/*/linux/x64" >&2
	exit 1
fi
echo "$lib"
