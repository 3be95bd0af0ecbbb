#!/usr/bin/env bash
# Restart and failover benchmark of `nex node up` processes (release build, no sandbox) on real nats-servers:
# node start → re-adopted workloads answering (after SIGTERM and after SIGKILL), and the request gap when a
# node's server dies or when one of two nodes serving a function is SIGKILLed.
#   scripts/bench-failover.sh [ROUNDS]      (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
export PATH="$PWD/.venv/bin:$PATH"
echo "== building (release)" >&2
for product in failover-bench nex nex-agent echoservice; do
    swift build -c release --package-path Benchmarks --product "$product" >&2
done
bin="$PWD/Benchmarks/.build/release"
exec "$bin/failover-bench" "$bin/nex" "$bin/echoservice" "$PWD/examples/echofunction.js" "${1:-10}"
