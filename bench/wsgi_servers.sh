#!/usr/bin/env bash
# What a WSGI server costs per small POST, before MUTT's own work: a one-route Flask app (read the
# body, answer 202 with JSON) under gunicorn's gthread worker (what MUTT's web app runs on, and its
# ingest did before), gunicorn's gevent worker (ingest's now) and Granian, one after the other,
# alternating, twice each. Prints each server's CPU per
# request (its processes' utime + stime from /proc) and requests served.
#
#   bench/wsgi_servers.sh [VENV] [SECONDS] [CONNECTIONS]
#
# VENV (default /tmp/wsgi-venv) is a throwaway virtualenv, made and filled on the first run; the
# senders are this checkout's .venv Python, keep-alive http.client connections on 127.0.0.1:8811.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv=${1:-/tmp/wsgi-venv}; seconds=${2:-10}; connections=${3:-32}
port=8811
if [ ! -x "$venv/bin/granian" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q flask gunicorn gevent granian packaging
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat >"$work/app.py" <<'EOF'
from flask import Flask, jsonify, request

app = Flask(__name__)


@app.post("/events")
def events():
    return jsonify(accepted=1, bytes=len(request.get_data())), 202
EOF
cat >"$work/send.py" <<'EOF'
import http.client, sys, threading, time

port, connections, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
body = b'[{"hostname":"h1","message":"Interface Gi0/1 down","syslog_severity":3}]'
stop, served, lock = time.monotonic() + seconds, [0], threading.Lock()


def send():
    conn, n = http.client.HTTPConnection("127.0.0.1", port), 0
    while time.monotonic() < stop:
        conn.request("POST", "/events", body, {"Content-Type": "application/json"})
        conn.getresponse().read()
        n += 1
    with lock:
        served[0] += n


threads = [threading.Thread(target=send) for _ in range(connections)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(served[0])
EOF

ticks() {  # CPU clock ticks used so far by process $1 and its children
  local total=0 pid
  for pid in $(pgrep -P "$1") "$1"; do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
  done
  echo "$total"
}

measure() {
  local name=$1; shift
  (cd "$work" && exec "$@") >"$work/$name.log" 2>&1 &
  local server=$!
  for _ in $(seq 1 50); do curl -s -o /dev/null "localhost:$port/" && break; sleep 0.2; done
  local before; before=$(ticks "$server")
  local served; served=$("$here/.venv/bin/python" "$work/send.py" "$port" "$connections" "$seconds")
  local after; after=$(ticks "$server")
  kill -TERM "$server"; wait "$server" 2>/dev/null || true
  local hz; hz=$(getconf CLK_TCK)
  printf '%-16s %8s requests  %5s us of server CPU per request\n' "$name" "$served" \
    "$(( (after - before) * 1000000 / hz / served ))"
}

for _ in 1 2; do
  measure gunicorn-gthread "$venv/bin/gunicorn" -b "127.0.0.1:$port" -w 1 --threads "$connections" app:app
  measure gunicorn-gevent "$venv/bin/gunicorn" -b "127.0.0.1:$port" -w 1 -k gevent app:app
  measure granian "$venv/bin/granian" --interface wsgi --host 127.0.0.1 --port "$port" \
    --workers 1 --blocking-threads "$connections" app:app
done
