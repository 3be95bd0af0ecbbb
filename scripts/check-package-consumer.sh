#!/usr/bin/env bash
# Proves the NATS library stands alone: builds examples/nats-only, a package that depends on this one *by version*
# (a tagged snapshot of the working tree) and uses only NATS and NATSJetStream, then runs it against a fresh
# nats-server on loopback. Fails when SwiftPM refuses the dependency (unsafe flags), when the build compiles CV8
# or links libnode, or when the program's request-reply and key-value round trip fails.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d /tmp/nex-consumer.XXXXXX)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# The working tree, uncommitted changes included, as a git repository tagged 0.1.0.
mkdir "$work/nex-swift"
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' file; do
  [ -e "$file" ] && cp --parents -P "$file" "$work/nex-swift/"
done
git -C "$work/nex-swift" init -q
git -C "$work/nex-swift" add -A
git -C "$work/nex-swift" -c user.name=check -c user.email=check@localhost commit -q -m snapshot
git -C "$work/nex-swift" tag 0.1.0
cp -R examples/nats-only "$work/consumer"

echo "== a package that depends on nex-swift 0.1.0 for NATS and NATSJetStream only"
NEX_SWIFT_PACKAGE_URL="file://$work/nex-swift" swift build --package-path "$work/consumer" 2>&1 | tail -3
if find "$work/consumer/.build" -type d \( -name 'CV8.build' -o -name 'NexRunnerJS.build' \) | grep -q .; then
  echo "check-package-consumer: the build compiled the V8 shim; NATS must not depend on it" >&2
  exit 1
fi
binary="$work/consumer/.build/debug/NATSOnly"
if ldd "$binary" | grep -q libnode; then
  echo "check-package-consumer: $binary links libnode; NATS must not need it" >&2
  exit 1
fi

# A fresh JetStream server on an ephemeral loopback port; the program runs once it says it is ready.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
.venv/bin/nats-server -a 127.0.0.1 -p "$port" -js -sd "$work/jetstream" >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do
  grep -q "Server is ready" "$work/server.log" && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
  sleep 0.1
done
grep -q "Server is ready" "$work/server.log" || { echo "nats-server did not start" >&2; exit 1; }
timeout 60 "$binary" "nats://127.0.0.1:$port"
