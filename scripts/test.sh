#!/usr/bin/env bash
# Runs every check: installs what is missing, checks formatting, builds, and runs all test targets
# (unit tests, then integration tests against real nats-server processes and real peers).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

echo "== format check (swift format lint --strict)"
swift format lint --strict -r Sources Tests Package.swift

echo "== build"
swift build --build-tests

echo "== tests"
swift test --skip-build "$@"
