#!/usr/bin/env bash
# Function benchmark: request/reply to a native Swift responder (the floor), a JavaScript echo function and a
# WebAssembly echo function on one node, side by side in one run; p50/p99 and triggers/s.
#   scripts/bench-functions.sh [REQUESTS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
export PATH="$PWD/.venv/bin:$PATH"
echo "== building (release)" >&2
swift build -c release --package-path Benchmarks --product fn-bench >&2
swift build -c release --package-path Benchmarks --product nex-agent >&2
bin="$PWD/Benchmarks/.build/release"
exec "$bin/fn-bench" "$bin/nex-agent" "$PWD/examples" "${1:-2000}" "${2:-3}"
