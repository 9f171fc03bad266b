"""CPU per event by part of the stack for two trees, from bench/compare.sh runs, and their ratio.

    python bench/cpu_by_part.py "this checkout" RUN... -- "/tmp/before" RUN...

Each RUN is the saved output of one ``compare.sh``; versus_tree.sh calls this. A part's figure is
its CPU seconds summed over a tree's runs, divided by the events audited in them, so each run
counts by its events. Exits 1 when a run lacks the figures, a run that failed, say.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

# stack_cpu.py's lines ("classify     21.18 s       35 us/event") and pipeline_bench.py's count.
_PART = re.compile(r"^(\S+)\s+([\d.]+) s\s+\d+ us/event$")
_AUDITED = re.compile(r"^audited\s+(\d+) events \(([\d,]+)/s end to end\)$")


def read_run(path: Path) -> tuple[int, float, Counter[str]]:
    """Events audited, their rate per second and CPU seconds by part, of one compare.sh output."""
    audited, rate, seconds = 0, 0.0, Counter[str]()
    for line in path.read_text().splitlines():
        if match := _AUDITED.match(line):
            audited, rate = int(match[1]), float(match[2].replace(",", ""))
        elif match := _PART.match(line):
            seconds[match[1]] += float(match[2])
    if not audited or "total" not in seconds:
        raise SystemExit(f"cpu_by_part.py: {path} holds no audited count or CPU figures")
    return audited, rate, seconds


def per_event(runs: list[tuple[int, float, Counter[str]]]) -> dict[str, float]:
    """µs of CPU per audited event by part, over all ``runs``."""
    events = sum(audited for audited, _, _ in runs)
    seconds = sum((s for _, _, s in runs), Counter[str]())
    return {part: used / events * 1e6 for part, used in seconds.items()}


def main(argv: list[str]) -> int:
    """Print both trees' CPU per event by part, the ratio of each, and the total by round."""
    if "--" not in argv:
        raise SystemExit(__doc__)
    split = argv.index("--")
    (first, *first_paths), (second, *second_paths) = argv[:split], argv[split + 1 :]
    ours = [read_run(Path(p)) for p in first_paths]
    theirs = [read_run(Path(p)) for p in second_paths]
    if not ours or not theirs:
        raise SystemExit("cpu_by_part.py: give at least one run for each tree")
    a, b = per_event(ours), per_event(theirs)
    width = max(len(first), len(second), 12) + 2
    print()
    print(f"{'µs/event':12}{first:>{width}}{second:>{width}}{'ratio':>8}")
    for part in sorted(set(a) | set(b), key=lambda p: (p == "total", p)):
        mine, other = a.get(part, 0.0), b.get(part, 0.0)
        ratio = f"{mine / other:.2f}" if other >= 1 else ""
        print(f"{part:12}{mine:>{width}.1f}{other:>{width}.1f}{ratio:>8}")
    for name, runs in ((first, ours), (second, theirs)):
        rates = ", ".join(f"{rate:,.0f}" for _, rate, _ in runs)
        totals = ", ".join(f"{s['total'] / n * 1e6:.0f}" for n, _, s in runs)
        print(f"{name}: {rates} events/s audited; total {totals} µs/event by round")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
