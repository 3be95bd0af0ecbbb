#!/usr/bin/env bash
# Proves the NATS library stands alone: builds examples/nats-only, a package that depends on this one *by version*
# (a tagged snapshot of the working tree) and uses only NATS and NATSJetStream, then runs it against a fresh
# nats-server on loopback. Fails when SwiftPM refuses the dependency (unsafe flags), when the build compiles CV8
# or links libnode, or when the program's request-reply and key-value round trip fails.
# The snapshot and the consumer's build live under .build/package-consumer, so a second run is incremental.
set -euo pipefail
cd "$(dirname "$0")/.."
base="$PWD/.build/package-consumer"
work=$(mktemp -d /tmp/nex-consumer.XXXXXX)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# The working tree, uncommitted changes included, as a git repository with a release tag (made anew each run; a
# tag of its own each time, so no cached clone can hold an older commit under it).
snapshot="$base/nex-swift"
rm -rf "$snapshot" && mkdir -p "$snapshot"
copy_tree() {  # copies the files git lists under $1 (tracked and new, not ignored) into $2
  git ls-files -z --cached --others --exclude-standard -- "$1" | while IFS= read -r -d '' file; do
    if [ -e "$file" ] || [ -L "$file" ]; then cp --parents -P "$file" "$2/"; fi
  done
}
copy_tree . "$snapshot"
git -C "$snapshot" init -q
git -C "$snapshot" add -A
git -C "$snapshot" -c user.name=check -c user.email=check@localhost -c commit.gpgsign=false \
  -c core.hooksPath=/dev/null commit -q -m snapshot
git -C "$snapshot" tag "0.1.$(date +%s)"
rm -rf "$base/consumer" "$base/examples" && mkdir -p "$base/examples"
copy_tree examples/nats-only "$base/examples"
mv "$base/examples/examples/nats-only" "$base/consumer"
scratch="$base/build"
rm -f "$base/consumer/Package.resolved"

echo "== a package that depends on nex-swift by version for NATS and NATSJetStream only"
if ! NEX_SWIFT_PACKAGE_URL="file://$snapshot" swift build --package-path "$base/consumer" --scratch-path "$scratch" \
    >"$base/build.log" 2>&1; then
  grep -E "error" "$base/build.log" >&2 || tail -20 "$base/build.log" >&2
  echo "check-package-consumer: the build failed (log: $base/build.log)" >&2
  exit 1
fi
# SwiftPM may lay out a directory for every target of the graph; what counts is what it compiled.
compiled=$(find "$scratch" -type f -name '*.o' \( -path '*/CV8.build/*' -o -path '*/NexRunnerJS.build/*' \))
if [ -n "$compiled" ]; then
  echo "check-package-consumer: the build compiled the V8 shim; NATS must not depend on it:" >&2
  echo "$compiled" | head -5 >&2
  exit 1
fi
binary="$scratch/debug/NATSOnly"
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
