#!/usr/bin/env bash
# Event-loop benchmark: a JavaScript function's round trips idle and while a 64 MiB native artifact deploys on
# the same in-process node (release build, no sandbox), side by side in one run, plus PING during the deploy.
#   scripts/bench-deploy-load.sh [ROUNDS]      (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
echo "== building (release)" >&2
for product in deploy-load-bench nex-agent echoservice; do
    swift build -c release --package-path Benchmarks --product "$product" >&2
done
bin="$PWD/Benchmarks/.build/release"
exec "$bin/deploy-load-bench" "$bin/nex-agent" "$bin/echoservice" "${1:-5}"
