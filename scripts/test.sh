#!/usr/bin/env bash
# Runs every check: installs what is missing, checks formatting, builds, and runs all test targets
# (unit tests, then integration tests against real nats-server processes and real peers), then builds a package
# outside the tree that depends on this one by version for the NATS library alone.
#
# The tests run in their own session under a time limit (NEX_TEST_TIMEOUT seconds, default 1800), so a hung
# test fails the run with the names of the tests still running instead of hanging it, and any process the
# tests leave behind is listed and killed. The full output is kept in .build/test-output.log; the console
# shows results, not the "started" lines.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

echo "== format check (swift format lint --strict)"
swift format lint --strict -r Sources Tests Package.swift Benchmarks/Sources Benchmarks/Package.swift
echo "== every try? says why (scripts/check-try.py)"
python3 scripts/check-try.py

echo "== build"
swift build --build-tests

echo "== tests"
# At most this many test cases run at once (Swift Testing starts every one together otherwise): a burst of a
# hundred nats-servers and nodes on two cores stalls the event loops of the ones already running for tens of
# seconds, past the timeouts they test. Heavy suites run one test at a time beside these (HeavyTests.swift).
export SWT_EXPERIMENTAL_MAXIMUM_PARALLELIZATION_WIDTH="${SWT_EXPERIMENTAL_MAXIMUM_PARALLELIZATION_WIDTH:-6}"
log=.build/test-output.log
sidfile=.build/test-session
rm -f "$sidfile"
limit="${NEX_TEST_TIMEOUT:-1800}"
set +e
setsid --wait bash -c 'echo $$ > "$0"; exec timeout -k 20 "$1" swift test --skip-build "${@:2}"' \
    "$sidfile" "$limit" "$@" 2>&1 | tee "$log" | grep --line-buffered -v ' started\.$'
status=${PIPESTATUS[0]}
set -e

if [ -s "$sidfile" ]; then
    sid=$(cat "$sidfile")
    sleep 1 # children killed by the parent-death signal are still exiting
    leftovers=$(ps -e -o pid=,sid=,stat=,args= | awk -v sid="$sid" '$2 == sid && $3 !~ /^Z/')
    if [ -n "$leftovers" ]; then
        echo "== processes the tests left behind (killed now):"
        echo "$leftovers"
        pkill -KILL -s "$sid" || true
    fi
fi

if [ "$status" -ne 0 ]; then
    if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
        echo "== the tests did not finish within ${limit} s; started and never finished:"
    else
        echo "== tests failed (exit $status); started and never finished:"
    fi
    # A test's "started" line without a matching "passed"/"failed" line (Swift Testing's output).
    sed -n '/^◇ Test case /d; s/^◇ Test \(.*\) started\.$/\1/p' "$log" | sort >.build/test-started
    sed -n 's/^\(✔\|✘\) Test \(.*\) \(passed\|failed\).*/\2/p' "$log" | sort >.build/test-ended
    comm -23 .build/test-started .build/test-ended | head -50
    echo "== failures:"
    grep -E '^✘ ' "$log" | head -50 || true
    exit "$status"
fi

# The NATS library used alone, by version, from a package outside this tree.
scripts/check-package-consumer.sh
