#!/usr/bin/env bash
# mlfleet demo: the whole product on one machine.
#
#   scripts/demo.sh up     install what is missing (containerd, runc), build, start a
#                          private containerd, the cloud and one edge device; register
#                          the iris model twice, build both images, create a service,
#                          roll out v1 then v2, score through the device's gateway
#   scripts/demo.sh down   stop everything and remove the demo's data
#
# Everything lives in $MLFLEET_DEMO_DIR (default ./demo-data); the private
# containerd uses its own root and socket under /tmp, leaving any host
# containerd alone. Ports are picked free. Needs root (containerd).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"

demo="${MLFLEET_DEMO_DIR:-$PWD/demo-data}"
bin="${BIN:-$PWD/bin}"
export MLFLEET_CONTAINERD_DIR="${MLFLEET_DEMO_CONTAINERD_DIR:-/tmp/mlfleet-demo-containerd}"
export MLFLEET_CONFIG="$demo/cli-config.json"

say() { printf '\n\033[1m# %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

down() {
  for p in edge cloud; do
    if [[ -f "$demo/$p.pid" ]]; then
      kill "$(cat "$demo/$p.pid")" 2>/dev/null || true
      for _ in $(seq 1 100); do kill -0 "$(cat "$demo/$p.pid")" 2>/dev/null || break; sleep 0.1; done
      rm -f "$demo/$p.pid"
    fi
  done
  scripts/containerd-test.sh stop >/dev/null 2>&1 || true
  rm -rf "$demo" "$MLFLEET_CONTAINERD_DIR"
  echo "demo stopped and removed"
}

# wait_for FILE PATTERN: the first match of a sed pattern in FILE, or fail.
wait_for() {
  local file=$1 pattern=$2 v=""
  for _ in $(seq 1 600); do
    v=$(sed -n "$pattern" "$file" 2>/dev/null | head -n1)
    [[ -n "$v" ]] && { echo "$v"; return 0; }
    sleep 0.1
  done
  echo "timed out waiting in $file; its end:" >&2
  tail -n 20 "$file" >&2
  return 1
}

up() {
  if [[ $(id -u) != 0 ]]; then echo "the demo runs containerd: run it as root" >&2; exit 1; fi
  if ! command -v containerd >/dev/null || ! command -v runc >/dev/null; then
    say "Installing containerd and runc (Debian packages)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq containerd runc
  fi
  [[ -e "$demo" ]] && down >/dev/null
  mkdir -p "$demo"

  say "Building mlfleet, mlfleet-cloud, mlfleet-edge and the scorers (for amd64, arm64, arm/v7)"
  make --no-print-directory build BIN="$bin" >/dev/null
  export PATH="$bin:$PATH"

  say "Starting a private containerd (root and socket under $MLFLEET_CONTAINERD_DIR)"
  sock=$(scripts/containerd-test.sh start)
  echo "containerd at $sock"

  say "Starting the cloud: REST API, dashboard-less; embedded MQTT broker and OCI registry"
  mlfleet-cloud init --data-dir "$demo/cloud" >/dev/null
  mlfleet-cloud serve --data-dir "$demo/cloud" --addr 127.0.0.1:0 --mqtt-addr 127.0.0.1:0 >"$demo/cloud.log" 2>&1 &
  echo $! >"$demo/cloud.pid"
  url=$(wait_for "$demo/cloud.log" 's/.*url=\(http:[^ ]*\).*/\1/p')
  echo "cloud at $url (log: $demo/cloud.log)"
  run mlfleet login --cloud "$url" --token-file "$demo/cloud/admin.token"
  run mlfleet subscription create demo
  run mlfleet config set subscription demo
  run mlfleet account create models --kind modelmanagement
  run mlfleet config set account models

  say "Registering the iris model twice: v1 logistic regression, v2 a small MLP (both real sklearn models)"
  run mlfleet model register examples/testdata/iris_logreg.onnx --name iris --description "logistic regression"
  run mlfleet model register examples/testdata/iris_mlp.onnx --name iris --description "MLP"
  run mlfleet manifest create --name iris --model iris:1
  run mlfleet manifest create --name iris --model iris:2

  say "Building multi-arch OCI images from the manifests (no Docker): v2 uploads only its model and manifest layers"
  run mlfleet image create iris --manifest iris:1
  run mlfleet image create iris --manifest iris:2

  say "Enrolling this machine as an edge device"
  token=$(mlfleet device enroll-token --label site=demo -o json | sed -n 's/.*"token": *"\([^"]*\)".*/\1/p')
  run mlfleet-edge enroll --cloud "$url" --token "$token" --name demo-device --data-dir "$demo/edge"
  mlfleet-edge run --data-dir "$demo/edge" --gateway-addr 127.0.0.1:0 --containerd-address "$sock" --namespace mlfleet-demo >"$demo/edge.log" 2>&1 &
  echo $! >"$demo/edge.pid"
  gw=$(wait_for "$demo/edge.log" 's/.*msg="gateway listening" addr=\([0-9.:]*\).*/\1/p')
  echo "device gateway at http://$gw (log: $demo/edge.log)"
  run mlfleet device list

  say "A fleet environment (every device labelled site=demo) and a service on it, rolled out to v1"
  run mlfleet environment create lab --selector site=demo
  run mlfleet service create iris --environment lab --image iris:1 --watch

  say "Scoring through the device's gateway"
  body='{"input_df":[{"X":[5.1,3.5,1.4,0.2]},{"X":[6.7,3.0,5.2,2.3]}]}'
  run curl -sS -H 'Content-Type: application/json' -d "$body" "http://$gw/services/iris/score"
  echo

  say "Rolling out v2 (blue/green on the device: the old version serves until the new one is healthy)"
  run mlfleet rollout start iris --image iris:2 --watch
  run curl -sS -H 'Content-Type: application/json' -d "$body" "http://$gw/services/iris/score"
  echo
  run mlfleet service devices iris

  say "Done. Try next"
  cat <<EOT
  export MLFLEET_CONFIG=$MLFLEET_CONFIG PATH=$bin:\$PATH
  mlfleet device show \$(mlfleet device list -o json | sed -n 's/.*"id": *"\\([^"]*\\)".*/\\1/p' | head -n1)
  mlfleet rollout rollback iris --watch                      # back to v1
  curl -s http://$gw/services/iris/swagger.json | head -c 400
  curl -s -H 'Content-Type: application/json' -d '{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}' http://$gw/v2/models/iris/infer
  make demo-down                                             # stop and remove everything
EOT
}

case "${1:-up}" in
up) up ;;
down) down ;;
*) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
