#!/usr/bin/env bash
# Times what a newcomer waits for at the terminal, against a real node (no sandbox) on a fresh nats-server:
# devrun of a new name, devrun that replaces a running copy, nex ls, nex ls NAME and nex ls of an unknown
# name. Prints the median of ROUNDS (default 5) in milliseconds. Usage: scripts/cli-timings.sh [ROUNDS] [NEX]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-5}"
nex="${2:-.build/debug/nex}"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
.venv/bin/nats-server -a 127.0.0.1 -p "$port" -js -sd "$work/js" >/dev/null 2>&1 &
url="nats://127.0.0.1:$port"
export NEX_HOME="$work/nexhome" NATS_URL="$url"
"$nex" node up --no-sandbox >"$work/node.log" 2>&1 &
for _ in $(seq 100); do grep -q " is up" "$work/node.log" && break; sleep 0.1; done
cp examples/echofunction.js "$work/fn.js"
ms() { local s e; s=$(date +%s%N); "$@" >/dev/null 2>&1 || true; e=$(date +%s%N); echo $(((e - s) / 1000000)); }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}'; }
"$nex" devrun "$work/fn.js" --trigger_subject t.warm >/dev/null 2>&1  # keys made, bucket made
new=(); replace=(); ls=(); named=(); unknown=()
for i in $(seq "$rounds"); do
    cp examples/echofunction.js "$work/new$i.js"
    new+=("$(ms "$nex" devrun "$work/new$i.js" --trigger_subject "t.new$i")")
    replace+=("$(ms "$nex" devrun "$work/fn.js" --trigger_subject t.warm)")
    ls+=("$(ms "$nex" ls)")
    named+=("$(ms "$nex" ls fnjs)")
    unknown+=("$(ms "$nex" ls nosuch)")
done
printf '%-32s %6s ms\n' "devrun, a new name" "$(printf '%s\n' "${new[@]}" | median)"
printf '%-32s %6s ms\n' "devrun, replacing a running copy" "$(printf '%s\n' "${replace[@]}" | median)"
printf '%-32s %6s ms\n' "nex ls" "$(printf '%s\n' "${ls[@]}" | median)"
printf '%-32s %6s ms\n' "nex ls NAME" "$(printf '%s\n' "${named[@]}" | median)"
printf '%-32s %6s ms\n' "nex ls UNKNOWN" "$(printf '%s\n' "${unknown[@]}" | median)"
