#!/usr/bin/env bash
# Deploy benchmark of a Nex node (no sandbox): deploy → accepted, deploy → first answer, idle workloads per GiB.
#   scripts/bench-nex.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
export PATH="$PWD/.venv/bin:$PATH"
echo "== building (release)" >&2
swift build -c release --package-path Benchmarks --product nex-bench >&2
swift build -c release --package-path Benchmarks --product bench-echo >&2
swift build -c release --package-path Benchmarks --product nex-agent >&2 2>/dev/null \
  || swift build --product nex-agent >&2
bin="$PWD/Benchmarks/.build/release"
agent="$bin/nex-agent"
[ -x "$agent" ] || agent="$PWD/.build/debug/nex-agent"
# Deployed services are shipped stripped, as anyone would (the download is part of the measured deploy).
strip -o "$bin/bench-echo.stripped" "$bin/bench-echo"
exec "$bin/nex-bench" "$agent" "$bin/bench-echo.stripped" "${1:-30}"
