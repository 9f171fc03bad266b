"""Print two systems' throughputs, round by round, and their ratio (versus_*.sh call it).

    python bench/ratio.py "MUTT end to end" "events/s audited" "the seeds' design" "events/s drained" \\
        M1 M2 ... S1 S2 ...

The figures are the first system's rounds, then as many of the second's, in the same order.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    """Print the figures, the ratio of each round and the ratio of the sums."""
    first, first_unit, second, second_unit, *figures = argv
    values = [float(v) for v in figures]
    rounds = len(values) // 2
    if rounds == 0 or len(values) != 2 * rounds:
        raise SystemExit("ratio.py: give as many figures for each system, at least one each")
    ours, theirs = values[:rounds], values[rounds:]
    width = max(len(first), len(second), len("ratio by round")) + 2
    print()
    print(f"{first + ':':{width}}{', '.join(f'{v:,.0f}' for v in ours)} {first_unit}")
    print(f"{second + ':':{width}}{', '.join(f'{v:,.0f}' for v in theirs)} {second_unit}")
    ratios = [a / b for a, b in zip(ours, theirs, strict=True)]
    print(f"{'ratio by round:':{width}}{', '.join(f'{r:.1f}x' for r in ratios)}")
    print(f"{'ratio of sums:':{width}}{sum(ours) / sum(theirs):.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
