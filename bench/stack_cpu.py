"""CPU seconds used by each part of a running ``mutt run`` stack, per event of a benchmark run.

    python bench/stack_cpu.py snap > before.json
    ... run bench/pipeline_bench.py ...
    python bench/stack_cpu.py snap > after.json
    python bench/stack_cpu.py diff before.json after.json EVENTS

On a machine this small every part competes for the same two cores, so CPU per event, part by part, is
what an optimisation changes; events/s follows from it only when nothing else runs.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter

PARTS = (
    ("ingest", lambda a: "gunicorn" in a and "create_ingest_app" in a),
    ("classify", lambda a: "worker -Q mutt.classify" in a),
    ("forward", lambda a: "worker -Q mutt.forward" in a),
    ("beat", lambda a: "celery -A mutt_app beat" in a),
    ("sink", lambda a: "moog-sink" in a),
    # The private Redis `mutt run` starts (redis-server retitles itself "redis-server HOST:PORT");
    # not a system one on the default port.
    ("redis", lambda a: "redis-server" in a and ":6379" not in a),
    ("postgres", lambda a: a.startswith("postgres")),
    ("launcher", lambda a: "mutt_app.devtools run" in a or "mutt_app.cli run" in a),
)


def part_of(argv: str) -> str | None:
    """The stack part a process's command line belongs to, if any."""
    return next((name for name, matches in PARTS if matches(argv)), None)


def snapshot() -> dict[str, float]:
    """CPU seconds (user + system) so far, summed by part, of the processes alive now."""
    tick = os.sysconf("SC_CLK_TCK")
    totals: Counter[str] = Counter()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        part = part_of(argv)
        if part:
            totals[part] += (int(fields[11]) + int(fields[12])) / tick
    return dict(totals)


def main(argv: list[str]) -> int:
    """``snap`` prints a snapshot as JSON; ``diff A B EVENTS`` prints CPU per event by part."""
    if argv[:1] == ["snap"]:
        print(json.dumps(snapshot()))
        return 0
    if len(argv) == 4 and argv[0] == "diff":
        with open(argv[1]) as f:
            before = json.load(f)
        with open(argv[2]) as f:
            after = json.load(f)
        events = float(argv[3])
        total = 0.0
        for part in sorted(set(before) | set(after)):
            used = after.get(part, 0.0) - before.get(part, 0.0)
            total += used
            print(f"{part:10s} {used:7.2f} s  {used / events * 1e6:7.0f} us/event")
        print(f"{'total':10s} {total:7.2f} s  {total / events * 1e6:7.0f} us/event")
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
