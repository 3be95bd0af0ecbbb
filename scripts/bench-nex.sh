#!/usr/bin/env bash
# Deploy benchmark of a Nex node, without a sandbox, in the namespace sandbox and in the vm sandbox, side by
# side: deploy → accepted, deploy → first answer, warm-pool refill (for vm: restore from the snapshot), memory
# of an idle sandbox, idle workloads per GiB. The vm driver's kernel and rootfs go to $NEX_HOME/vm (~/.nex/vm).
#   scripts/bench-nex.sh [ROUNDS]        (NEX_BENCH_VM=0 leaves the vm driver out)
# The artifacts are static (the sandbox requires it): the example echo service built by
# examples/echoservice/build.sh (release, -static-executable; a few minutes the first time) and a small C
# program that waits.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
export PATH="$PWD/.venv/bin:$PATH"
echo "== building (release)" >&2
swift build -c release --package-path Benchmarks --product nex-bench >&2
swift build -c release --package-path Benchmarks --product nex-agent >&2
examples/echoservice/build.sh >&2
bin="$PWD/Benchmarks/.build/release"
printf '#include <unistd.h>\nint main(void) { for (;;) pause(); }\n' >"$bin/idle.c"
cc -static -O2 -o "$bin/idle" "$bin/idle.c"
exec "$bin/nex-bench" "$bin/nex-agent" "$PWD/examples/echoservice/echoservice" "$bin/idle" "${1:-30}"
