#!/usr/bin/env bash
# This checkout next to another source tree (a `git worktree` of the code before a change), one
# after the other, alternating, ROUNDS times each (default 2), then the stack's CPU per event by
# part for each and their ratio:
#
#   DATABASE_URL=postgresql://postgres@127.0.0.1:5432/mutt_bench \
#   BEFORE_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/mutt_bench0 \
#     bench/versus_tree.sh TREE [RATE BATCH SECONDS THREADS]
#
# Each tree runs bench/compare.sh on a database of its own, migrated, seeded and partitioned by that
# tree's own code: an older tree's schema may differ (BENCHMARKS.md has the commands). Defaults as
# versus_seeds.sh: 20,000 events/s offered in 100-event requests for 20 s, 8 sender threads, 1 %
# forwarded.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
tree=$(cd "${1:?usage: versus_tree.sh TREE [RATE BATCH SECONDS THREADS]}" && pwd); shift
rate=${1:-20000}; batch=${2:-100}; seconds=${3:-20}; threads=${4:-8}
: "${DATABASE_URL:?set DATABASE_URL to this checkout's benchmark database}"
: "${BEFORE_DATABASE_URL:?set BEFORE_DATABASE_URL to the other tree's benchmark database}"
rounds=${ROUNDS:-2}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

for round in $(seq 1 "$rounds"); do
  echo "== round $round: this checkout ($here)"
  "$here/bench/compare.sh" "$here" "$rate" "$batch" "$seconds" "$threads" --forward-share 0.01 \
    | tee "$out/this-$round"
  echo "== round $round: $tree"
  DATABASE_URL=$BEFORE_DATABASE_URL \
    "$here/bench/compare.sh" "$tree" "$rate" "$batch" "$seconds" "$threads" --forward-share 0.01 \
    | tee "$out/tree-$round"
done

"$here/.venv/bin/python" "$here/bench/cpu_by_part.py" "this checkout" "$out"/this-* -- "$tree" "$out"/tree-*
