#!/usr/bin/env bash
# MUTT next to Alerta 9.1 with single-event requests, on this machine, one after the other,
# alternating, twice each, then the ratio of their throughputs:
#
#   DATABASE_URL=postgresql://postgres@127.0.0.1:5432/mutt_bench bench/versus_alerta.sh [SECONDS CONNECTIONS]
#
# Both are driven by the same sender, DRIVER: wrk (the default; Debian's package, see
# bench/wrk_driver.py for why) or threads (the Python senders). MUTT: bench/compare.sh on this
# checkout with the shipped defaults, 1 % forwarded, its audited events/s end to end. Alerta:
# bench/alerta_bench.py (its virtualenv at $ALERTA_VENV, default /tmp/alerta-venv; its database
# alerta_bench beside DATABASE_URL's, made afresh each run), alerts/s accepted. Defaults: 20 s,
# 128 connections (or sender threads).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-20}; connections=${2:-128}; driver=${DRIVER:-wrk}
: "${DATABASE_URL:?set DATABASE_URL to the benchmark database (see BENCHMARKS.md)}"
python=$here/.venv/bin/python
alerta_url=${DATABASE_URL%/*}/alerta_bench
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

mutt_rates=(); alerta_rates=()
for round in 1 2; do
  echo "== round $round: Alerta 9.1 (bench/alerta_bench.py --driver $driver)"
  "$python" "$here/bench/alerta_bench.py" --venv "${ALERTA_VENV:-/tmp/alerta-venv}" \
    --database-url "$alerta_url" --seconds "$seconds" --threads "$connections" --driver "$driver" \
    | tee "$out/alerta-$round"
  # "alerta 9.1 (gunicorn -w 2): N alerts accepted (R/s), ..."
  alerta_rates+=("$(sed -n 's/^alerta 9.1 .* alerts accepted (\([0-9,]*\)\/s).*$/\1/p' "$out/alerta-$round" | tr -d ,)")
  echo "== round $round: MUTT (bench/compare.sh . 5000 1 $seconds $connections --forward-share 0.01 --driver $driver)"
  "$here/bench/compare.sh" "$here" 5000 1 "$seconds" "$connections" --forward-share 0.01 \
    --driver "$driver" | tee "$out/mutt-$round"
  # "audited       N events (R/s end to end)"
  mutt_rates+=("$(sed -n 's/^audited .*(\([0-9,]*\)\/s end to end)$/\1/p' "$out/mutt-$round" | tr -d ,)")
done

"$python" "$here/bench/ratio.py" "MUTT single events" "events/s audited" "Alerta 9.1" "alerts/s accepted" \
  "${mutt_rates[@]}" "${alerta_rates[@]}"
