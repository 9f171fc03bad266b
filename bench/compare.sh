#!/usr/bin/env bash
# Run the stack from a source tree (this checkout, or a `git worktree` of an older commit), drive it
# with bench/pipeline_bench.py and print the driver's figures and CPU per event by part. Run it for
# two trees one after the other, alternating, to compare them on the same (noisy) machine:
#
#   bench/compare.sh TREE RATE BATCH SECONDS THREADS [pipeline_bench options...]
#   bench/compare.sh . 10000 100 20 8 --forward-share 0.01
#
# Needs DATABASE_URL (a migrated, seeded, partitioned PostgreSQL database it may empty) and this
# checkout's .venv; the stack's private Redis and data live in a fresh temporary directory.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
tree=$(cd "$1" && pwd); rate=$2; batch=$3; seconds=$4; threads=$5; shift 5
: "${DATABASE_URL:?set DATABASE_URL to the benchmark database}"
python=$here/.venv/bin/python
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
# A stack left running (say, by a compare.sh whose shell was killed) would answer in this one's
# place, and the run would measure it without a word.
if curl -sf localhost:8080/health >/dev/null; then
  echo "compare.sh: something already answers on localhost:8080; stop it first" >&2
  echo "  (pgrep -af 'mutt_app|gunicorn' shows it; kill -INT the 'run' process)" >&2
  exit 1
fi
psql -q "$DATABASE_URL" -c "TRUNCATE event_audit_log; TRUNCATE dead_letters" >/dev/null

# `mutt run` is mutt_app.devtools since the layers; trees from before have it in mutt_app.cli.
launcher=mutt_app.devtools
[ -d "$tree/mutt_app/devtools" ] || launcher=mutt_app.cli
# Forwarding is limited by MOOG_RATE_LIMIT; lift it so the local sink, not the limiter, is measured.
(cd "$tree" && PYTHONPATH=$tree MUTT_DATA_DIR=$data MOOG_RATE_LIMIT=${MOOG_RATE_LIMIT:-2000} \
  exec "$python" -m "$launcher" run --without flower,web >"$data/stack.log" 2>&1) &
stack=$!
for _ in $(seq 1 120); do curl -sf localhost:8080/health >/dev/null && break; sleep 1; done
sleep 5  # let start-up work (imports, rule compilation) settle out of the CPU figures

"$python" "$here/bench/stack_cpu.py" snap >"$data/before.json"
"$python" "$here/bench/pipeline_bench.py" --database-url "$DATABASE_URL" --rate "$rate" \
  --batch "$batch" --duration "$seconds" --threads "$threads" "$@" | grep -v '^  audited' \
  | tee "$data/bench.out"
"$python" "$here/bench/stack_cpu.py" snap >"$data/after.json"
events=$(awk '/^audited/ {print $2}' "$data/bench.out")
"$python" "$here/bench/stack_cpu.py" diff "$data/before.json" "$data/after.json" "$events"
curl -s localhost:8080/metrics | grep -E '^mutt_ingest_publish_round_requests_(sum|count)' || true
# What reached Moog by the end of the run: alerts, and the requests that carried them.
curl -s localhost:8099/_stats | "$python" -c \
  'import json, sys; s = json.load(sys.stdin); print("sink          %s alerts in %s requests" % (s["received"], s["requests"]))' \
  || true
kill -INT "$stack"; wait "$stack" || true
