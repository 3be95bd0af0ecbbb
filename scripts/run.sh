#!/usr/bin/env bash
# The project's main job: installs what is missing, then runs the NATS client demo against $NATS_URL or,
# when none is given, against an embedded nats-server it starts and stops itself.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build --product nats-demo
exec .build/debug/nats-demo "$@"
