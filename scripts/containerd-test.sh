#!/usr/bin/env bash
# containerd-test.sh starts or stops a private containerd for the tests of
# edge/internal/containerd: its own config, root, state and socket under one
# directory, so it never touches (or needs) the system's containerd.
#
#   scripts/containerd-test.sh start   start it in the background (no-op if already up)
#   scripts/containerd-test.sh stop    stop it, its shims and their mounts
#   scripts/containerd-test.sh status  exit 0 if it answers
#
# Env: MLFLEET_CONTAINERD_DIR (default /tmp/mlfleet-containerd). Keep it short:
# the socket path must fit in 108 bytes.
# On start it prints the socket path (also written to $DIR/socket); use it as
# MLFLEET_CONTAINERD_SOCKET for `go test ./edge/internal/containerd/`.
#
# Needs root and the Debian packages `containerd runc` (containerd 1.6 or newer).
set -euo pipefail

dir="${MLFLEET_CONTAINERD_DIR:-/tmp/mlfleet-containerd}"
sock="$dir/containerd.sock"
pidfile="$dir/containerd.pid"

die() { echo "containerd-test.sh: $*" >&2; exit 1; }

answers() { ctr --address "$sock" version >/dev/null 2>&1; }

start() {
	[[ $(id -u) == 0 ]] || die "must run as root"
	command -v containerd >/dev/null || die "containerd not installed (apt-get install -y containerd runc)"
	command -v runc >/dev/null || die "runc not installed (apt-get install -y containerd runc)"
	if [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null && answers; then
		echo "$sock"
		return 0
	fi
	mkdir -p "$dir/root" "$dir/state"
	cat >"$dir/config.toml" <<EOF
version = 2
root = "$dir/root"
state = "$dir/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "$sock"

[ttrpc]
  address = "$dir/containerd.sock.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""
EOF
	rm -f "$sock"
	# setsid: the daemon must outlive the shell (and test process) that started it.
	setsid containerd --config "$dir/config.toml" >"$dir/containerd.log" 2>&1 </dev/null &
	echo $! >"$pidfile"
	local deadline=$((SECONDS + 30))
	until answers; do
		if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
			tail -n 30 "$dir/containerd.log" >&2 || true
			die "containerd exited during start; log: $dir/containerd.log"
		fi
		((SECONDS < deadline)) || die "containerd did not answer on $sock within 30s; log: $dir/containerd.log"
		sleep 0.2
	done
	echo "$sock" >"$dir/socket"
	echo "$sock"
}

# shims lists the pids of the shims serving our daemon (their command line
# names our socket), never anyone else's.
shims() {
	local f
	for f in $(grep -lsaF -- "$sock" /proc/[0-9]*/cmdline); do
		if grep -qsaF containerd-shim "$f"; then
			f=${f#/proc/}
			echo "${f%/cmdline}"
		fi
	done
}

stop() {
	if [[ -f $pidfile ]]; then
		local pid
		pid=$(cat "$pidfile")
		if kill -0 "$pid" 2>/dev/null; then
			kill "$pid" 2>/dev/null || true
			local deadline=$((SECONDS + 15))
			while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
			kill -9 "$pid" 2>/dev/null || true
		fi
		rm -f "$pidfile"
	fi
	local s
	for s in $(shims); do
		kill -9 "$s" 2>/dev/null || true
	done
	# Their containers outlive the shims: ask runc to kill and remove ours
	# (the runc shim keeps runc's state in /run/containerd/runc/<namespace>).
	local nsdir ns c
	if command -v runc >/dev/null; then
		for nsdir in "$dir"/state/io.containerd.runtime.v2.task/*/; do
			[[ -d $nsdir ]] || continue
			ns=$(basename "$nsdir")
			for c in "$nsdir"*/; do
				[[ -d $c ]] || continue
				runc --root "/run/containerd/runc/$ns" delete --force "$(basename "$c")" 2>/dev/null || true
			done
		done
	fi
	# Unmount whatever is left under our directory, deepest first.
	local m
	for m in $(awk -v d="$dir/" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r); do
		umount -l "$m" 2>/dev/null || true
	done
	rm -f "$sock" "$dir/socket"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) answers ;;
*) die "usage: $0 start|stop|status" ;;
esac
