#!/usr/bin/env bash
# mlfleet quickstart: builds the binaries, starts the cloud on embedded
# defaults (its own data dir, a free port), and walks through the main flow
# with the CLI: subscription -> accounts -> workspace -> project -> model ->
# manifest. Each command is printed before it runs.
#
#   scripts/quickstart.sh          run it, then stop the cloud
#   scripts/quickstart.sh --keep   leave the cloud running to try more commands
#
# Env: MLFLEET_QUICKSTART_DIR (default ./quickstart-data, wiped first), BIN (default ./bin).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"

keep=0
[[ "${1:-}" == "--keep" ]] && keep=1
data="${MLFLEET_QUICKSTART_DIR:-$PWD/quickstart-data}"
bin="${BIN:-$PWD/bin}"

say() { printf '\n\033[1m# %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

say "Building mlfleet, mlfleet-cloud (into $bin)"
mkdir -p "$bin"
CGO_ENABLED=0 go build -trimpath -o "$bin/" ./cmd/mlfleet ./cmd/mlfleet-cloud
export PATH="$bin:$PATH"

rm -rf "$data"
mkdir -p "$data"
export MLFLEET_CONFIG="$data/cli-config.json"

say "Creating the first administrator"
run mlfleet-cloud init --data-dir "$data"

say "Starting the cloud (embedded store and blobs in $data)"
mlfleet-cloud serve --data-dir "$data" --addr 127.0.0.1:0 --mqtt-addr 127.0.0.1:0 2>"$data/cloud.log" &
cloud_pid=$!
cleanup() { if ((keep == 0)); then kill "$cloud_pid" 2>/dev/null || true; wait "$cloud_pid" 2>/dev/null || true; fi; }
trap cleanup EXIT
url=""
for _ in $(seq 1 300); do
  url=$(sed -n 's/.*url=\(http:[^ ]*\).*/\1/p' "$data/cloud.log" | head -n1)
  [[ -n "$url" ]] && curl -fsS "$url/healthz" >/dev/null 2>&1 && break
  kill -0 "$cloud_pid" 2>/dev/null || { cat "$data/cloud.log"; exit 1; }
  sleep 0.1
done
[[ -n "$url" ]] || { echo "the cloud did not start; see $data/cloud.log"; exit 1; }
echo "cloud at $url (log: $data/cloud.log)"

say "Logging in with the admin token"
run mlfleet login --cloud "$url" --token-file "$data/admin.token"
run mlfleet whoami

say "A subscription holds accounts; an experimentation account holds workspaces and projects"
run mlfleet subscription create demo --description "quickstart tenant"
run mlfleet config set subscription demo
run mlfleet account create experiments --kind experimentation
run mlfleet workspace create team -a experiments
run mlfleet project create iris -a experiments -w team --folder iris --git-remote https://git.example.invalid/iris.git

say "A model management account holds models, manifests (and later images, services, devices)"
run mlfleet account create models --kind modelmanagement
run mlfleet config set account models
run mlfleet model register examples/testdata/iris_logreg.onnx --name iris --description "iris logistic regression" --tag framework=sklearn
run mlfleet model list
run mlfleet model show iris:1

say "A manifest pairs model versions with a runtime and a schema (inferred here from the ONNX graph)"
run mlfleet manifest create --name iris --model iris:1 --runtime onnx
run mlfleet manifest show iris:1 -o json

say "Users and roles: a reader on the workspace only"
run mlfleet user create alice --email alice@example.com
run mlfleet role assign alice --role Reader -a experiments -w team
run mlfleet role list -a experiments -w team

say "Done"
echo "Try next:  export MLFLEET_CONFIG=$MLFLEET_CONFIG; mlfleet --help; mlfleet model download iris:1 -o /tmp/iris.onnx"
if ((keep)); then
  echo "The cloud keeps running (pid $cloud_pid); stop it with: kill $cloud_pid"
else
  echo "Stopping the cloud (run with --keep to leave it running)."
fi
