#!/usr/bin/env bash
# Stream-trigger benchmark: messages/s through a stream trigger into a JavaScript and a WebAssembly function
# (max_batch 1 and 64) beside a nats.go pull consumer doing the same trivial work with confirmed acks, and
# publish-to-ack latency; one node in this process (release agents, no sandbox), one nats-server, one run.
#   scripts/bench-triggers.sh [MESSAGES] [ROUNDS]      (default 20000 and 3)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
export PATH="$PWD/.venv/bin:$PATH"
echo "== building (release)" >&2
swift build -c release --package-path Benchmarks --product trigger-bench >&2
swift build -c release --package-path Benchmarks --product nex-agent >&2
mkdir -p .build/peers
GO111MODULE=off GOPATH="$PWD/.build/peers/gopath:/usr/share/gocode" GOCACHE="$PWD/.build/peers/gocache" \
  go build -o .build/peers/bench-go ./Benchmarks/peers/go/bench
bin="$PWD/Benchmarks/.build/release"
exec "$bin/trigger-bench" "$bin/nex-agent" "$PWD/examples" "$PWD/.build/peers/bench-go" "${1:-20000}" "${2:-3}"
