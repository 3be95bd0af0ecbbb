#!/usr/bin/env bash
# A benchmark of HEAD and of a baseline commit side by side in one run. Both trees are built (release), then
# each round runs the baseline and HEAD in turn (first one, then the other); the table gives every figure's
# median on each side and HEAD ÷ baseline.
#   scripts/bench-compare.sh functions|nex [ROUNDS] [BENCH ARGS...]
# NEX_BENCH_BASE names the baseline (default 8f75fc3: main before the link became the only road).
set -euo pipefail
cd "$(dirname "$0")/.."
bench=${1:?usage: scripts/bench-compare.sh functions|nex [ROUNDS] [BENCH ARGS...]}
rounds=${2:-3}
shift $(($# < 2 ? $# : 2))
base=$(git rev-parse --short "${NEX_BENCH_BASE:-8f75fc3}")
tree=.build/bench-base/$base
if [ ! -f "$tree/Package.swift" ]; then
  mkdir -p "$tree"
  git archive "$base" | tar -x -C "$tree"
fi
out=.build/bench-compare
mkdir -p "$out"
rm -f "$out"/*.txt
for round in $(seq 1 "$rounds"); do
  # The order alternates, so neither side always runs on a machine the other just warmed or loaded.
  order=$([ $((round % 2)) -eq 1 ] && echo "base head" || echo "head base")
  for side in $order; do
    dir=$([ "$side" = base ] && echo "$tree" || echo .)
    echo "== round $round: $side" >&2
    "$dir/scripts/bench-$bench.sh" "$@" >"$out/$side-$round.txt"
  done
done
python3 scripts/bench-compare.py "$base" "$out"
