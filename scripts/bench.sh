#!/usr/bin/env bash
# Side-by-side NATS client benchmark: this project's client vs nats.go 1.22.1 (Debian) and nats-py,
# all against one local nats-server 2.15.1, in one run. Prints medians of several rounds and ratios to nats.go.
#   scripts/bench.sh [--rounds N] [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "== building (release)" >&2
swift build -c release --package-path Benchmarks --product nats-bench >&2
mkdir -p .build/peers
GO111MODULE=off GOPATH="$PWD/.build/peers/gopath:/usr/share/gocode" GOCACHE="$PWD/.build/peers/gocache" \
  go build -o .build/peers/bench-go ./Benchmarks/peers/go/bench
exec .venv/bin/python scripts/bench.py "$@"
