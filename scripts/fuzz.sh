#!/usr/bin/env bash
# Fuzzes the parsers that take bytes from the network or from users with libFuzzer (the Swift toolchain's
# -sanitize=fuzzer, with AddressSanitizer), one target after another, each for SECONDS (default 60):
#   protocol   the NATS protocol parser (INFO, MSG, HMSG, PING, -ERR …), split at every chunking
#   headers    NATS/1.0 header blocks
#   info       INFO JSON;  connect  CONNECT JSON
#   control    $NEX control requests (auction, stop, deploy through the node's validator: JWT, xkv1, names)
#   agentlink  node↔agent link frames (decode, then encode back to the same bytes)
#   jwt        NATS JWT decode and verify;  xkv1  sealed environments opened with a node's xkey
# Usage: scripts/fuzz.sh [SECONDS] [TARGET…]      scripts/fuzz.sh --seeds   (rewrites Fuzz/Corpus)
#        scripts/fuzz.sh --ci   (what .ci/run does: a fixed seed and a fixed number of runs per target, so the
#                                result does not depend on the machine's speed)
# The committed seeds are in Fuzz/Corpus/<target>; new inputs go to .build/fuzz/corpus/<target>, crashes to
# .build/fuzz/crashes/. Exits non-zero when a target crashed; the input that did it is named.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null

echo "== building the fuzz targets (-sanitize=fuzzer,address)" >&2
mkdir -p .build
if ! swift build --package-path Fuzz -c debug -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library \
    --product nex-fuzz >.build/fuzz-build.log 2>&1; then
    grep -E "error" .build/fuzz-build.log >&2 || tail -20 .build/fuzz-build.log >&2
    echo "the fuzz build failed (log: .build/fuzz-build.log)" >&2
    exit 1
fi
bin="$PWD/Fuzz/.build/debug/nex-fuzz"

if [ "${1:-}" = "--seeds" ]; then
    rm -rf Fuzz/Corpus
    NEX_FUZZ_TARGET=protocol NEX_FUZZ_WRITE_SEEDS="$PWD/Fuzz/Corpus" "$bin"
    find Fuzz/Corpus -type f | sort
    exit 0
fi

seconds="${1:-60}"
ci=0
if [ "$seconds" = "--ci" ]; then ci=1; seconds="-"; fi
if [ $# -gt 0 ]; then shift; fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then targets=(protocol headers info connect control agentlink jwt xkv1); fi
out=.build/fuzz
# A CI run starts from the committed seeds alone, so a fixed seed gives the same inputs every time.
if [ "$ci" = 1 ]; then rm -rf "$out/corpus"; fi
mkdir -p "$out/crashes"
failed=0
printf "%-10s %8s %14s %10s %8s  %s\n" target seconds executions "exec/s" corpus result
for target in "${targets[@]}"; do
    mkdir -p "$out/corpus/$target"
    log="$out/$target.log"
    status=0
    # Swift's backtracer would run inside AddressSanitizer at a crash (and be reported itself): off.
    if [ "$ci" = 1 ]; then
        # The protocol target splits its input at every chunking: ten times slower per run than the others.
        runs=20000
        if [ "$target" = protocol ]; then runs=2000; fi
        limit=(-seed=1 -runs="$runs")
    else
        limit=(-max_total_time="$seconds")
    fi
    SWIFT_BACKTRACE=enable=no NEX_FUZZ_TARGET="$target" "$bin" "$out/corpus/$target" "Fuzz/Corpus/$target" \
        "${limit[@]}" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
        -artifact_prefix="$out/crashes/$target-" >"$log" 2>&1 || status=$?
    executed=$(awk '/stat::number_of_executed_units/ {print $2}' "$log")
    rate=$(awk '/stat::average_exec_per_sec/ {print $2}' "$log")
    corpus=$(find "$out/corpus/$target" -type f | wc -l)
    result="ok"
    if [ "$status" -ne 0 ]; then
        failed=1
        result="CRASH: $(grep -m1 -E 'Test unit written to' "$log" | sed 's/.*written to //') (see $log)"
    fi
    printf "%-10s %8s %14s %10s %8s  %s\n" "$target" "$seconds" "${executed:-?}" "${rate:-?}" "$corpus" "$result"
done
exit "$failed"
