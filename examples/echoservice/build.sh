#!/usr/bin/env bash
# Builds the example echo service (Sources/EchoService: a NATS micro service on svc.echo that reads NATS_URL)
# as a static executable, as sandboxed nodes require: release mode, Swift runtime and glibc linked in.
# The result is examples/echoservice/echoservice. (The tests use the debug build, .build/debug/echoservice.)
set -euo pipefail
cd "$(dirname "$0")/../.."
swift build -c release --product echoservice --static-swift-stdlib -Xswiftc -static-executable \
  --scratch-path .build/static
# Stripped: the node downloads the artifact on each first deploy (121 MB with debug info, 69 MB without: Foundation is linked in).
strip -o examples/echoservice/echoservice .build/static/release/echoservice
file examples/echoservice/echoservice 2>/dev/null || true
echo "built examples/echoservice/echoservice; deploy it with: nex devrun examples/echoservice/echoservice nats_url=\$NATS_URL"
