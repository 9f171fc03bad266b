#!/usr/bin/env bash
# MUTT end to end next to the seeds' own design, on this machine, one after the other, alternating,
# twice each, then the ratio of their throughputs:
#
#   DATABASE_URL=postgresql://postgres@127.0.0.1:5432/mutt_bench bench/versus_seeds.sh [RATE BATCH SECONDS THREADS]
#
# MUTT: bench/compare.sh on this checkout with the shipped defaults, 1 % forwarded (defaults: 20,000
# events/s offered in 100-event requests for 20 s, 8 sender threads). The seeds: their design reduced
# to its hot path, `seeds_baseline.py run 20000 10 2` (PostgreSQL and Redis on their default local
# ports), found at $SEEDS_BASELINE or ../shared/bench/seeds_baseline.py beside this checkout.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
rate=${1:-20000}; batch=${2:-100}; seconds=${3:-20}; threads=${4:-8}
: "${DATABASE_URL:?set DATABASE_URL to the benchmark database (see BENCHMARKS.md)}"
seeds=${SEEDS_BASELINE:-$here/../shared/bench/seeds_baseline.py}
[ -f "$seeds" ] || { echo "versus_seeds: no seeds baseline at $seeds (set SEEDS_BASELINE)" >&2; exit 2; }
python=$here/.venv/bin/python
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

mutt_rates=(); seeds_rates=()
for round in 1 2; do
  echo "== round $round: MUTT (bench/compare.sh . $rate $batch $seconds $threads --forward-share 0.01)"
  "$here/bench/compare.sh" "$here" "$rate" "$batch" "$seconds" "$threads" --forward-share 0.01 \
    | tee "$out/mutt-$round"
  # "audited       N events (R/s end to end)"
  mutt_rates+=("$(sed -n 's/^audited .*(\([0-9,]*\)\/s end to end)$/\1/p' "$out/mutt-$round" | tr -d ,)")
  echo "== round $round: the seeds' design ($seeds run 20000 10 2)"
  "$python" "$seeds" run 20000 10 2 | tee "$out/seeds-$round"
  # "seeds-design drain: N events audited, rules=10, procs=2: R events/s"
  seeds_rates+=("$(sed -n 's/^seeds-design drain: .*: \([0-9]*\) events\/s$/\1/p' "$out/seeds-$round")")
done

"$python" "$here/bench/ratio.py" "MUTT end to end" "events/s audited" "the seeds' design" "events/s drained" \
  "${mutt_rates[@]}" "${seeds_rates[@]}"
