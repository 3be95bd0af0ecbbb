#!/usr/bin/env bash
# The project's main job: a Nex node on this machine running the example echo service.
#
# Installs what is missing, builds nex, nex-agent and the echo service (a static executable: the sandbox
# has no shared libraries; the first build takes a few minutes), starts `nex node up` (which starts an
# embedded nats-server with JetStream when $NATS_URL is unset and nothing listens on 127.0.0.1:4222), deploys
# the echo service with `nex devrun`, and sends it a request. The node then keeps running until Ctrl-C.
# `scripts/run.sh --once` stops after the answer.
#
# Workloads run in the namespace sandbox (bubblewrap, cgroups, seccomp), the default; the echo service
# reaches only the NATS server it is given.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
swift build --product nex >/dev/null
swift build --product nex-agent >/dev/null
examples/echoservice/build.sh >/dev/null
export PATH="$PWD/.venv/bin:$PATH"
bin=.build/debug
export NEX_HOME="${NEX_HOME:-$HOME/.nex}"
mkdir -p "$NEX_HOME"
log="$NEX_HOME/node-up.log"

server=()
[ -n "${NATS_URL:-}" ] && server=(-s "$NATS_URL")
"$bin/nex" node up "${server[@]}" >"$log" 2>&1 &
node=$!
trap 'kill -TERM $node 2>/dev/null; wait $node 2>/dev/null || true' EXIT INT TERM

for _ in $(seq 1 300); do
    grep -q "is up" "$log" && break
    kill -0 $node 2>/dev/null || { cat "$log"; exit 1; }
    sleep 0.1
done
cat "$log"
url="${NATS_URL:-$(grep -o 'NATS_URL=nats://[0-9.:]*' "$log" | head -1 | cut -d= -f2)}"
url="${url:-nats://127.0.0.1:4222}"

echo "+ nex devrun examples/echoservice/echoservice nats_url=$url"
"$bin/nex" devrun -s "$url" examples/echoservice/echoservice "nats_url=$url"
echo "+ nex req svc.echo 'hello from Nex'"
for _ in $(seq 1 50); do
    if reply=$("$bin/nex" req -s "$url" svc.echo "hello from Nex" 2>/dev/null); then break; fi
    sleep 0.1
done
echo "${reply:?the echo service did not answer}"
"$bin/nex" node ls -s "$url"

if [ "${1:-}" = "--once" ]; then exit 0; fi
echo "The node keeps running (log: $log). Try: $bin/nex node ls -s $url, $bin/nex logs -s $url. Ctrl-C stops it."
wait $node
