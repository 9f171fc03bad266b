"""Micro-benchmark of the rule engine: compile time and classification throughput by rule count.

    .venv/bin/python bench/rules_bench.py [--rules 10 10000] [--events 50000] [--repeat 5]

Every size gets a synthetic rule set (fixed seed) of about 40% contains, 40% regex (a few without a
usable literal), 20% oid_prefix and a few severity-only rules, about a third with a severity
filter, and its own events: syslog-like lines of which about a third carry text or an OID that one
of its rules matches. All sizes run side by side in one process; the ratio is events/s against the
first size. Times are the process's CPU time (compile and classify), not wall time.
"""

from __future__ import annotations

import argparse
import random
import time
from dataclasses import dataclass

from mutt_app.rules.compile import compile_rules
from mutt_app.rules.decide import decide
from mutt_app.rules.snapshot import RuleSnapshot
from mutt_app.rules.validate import Rule

SEED = 2025
TEAMS = ("NETO", "UNIX", "DBA", "WINTEL", "STORAGE", "SECOPS", "APPS", "NOC")
WORDS = (
    "kernel sshd crond systemd link state changed up down interface port vlan user login failed"
    " session opened closed for from on to the a of error warning notice info timeout retry"
    " connection reset by peer packet dropped queue full buffer memory cpu load high normal"
    " temperature fan power supply module inserted removed neighbor adjacency established lost"
)
COMMON = tuple(WORDS.split())  # the everyday words of log lines, in messages and in rules
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True)
class Event:
    """What decide() reads from an event."""

    message: str
    trap_oid: str | None
    severity: int | None
    hostname: str


def token(rnd: random.Random) -> str:
    """A pronounceable made-up word, like the mnemonics and daemon names in real rules."""
    syllables = rnd.randint(2, 4)
    return "".join(rnd.choice("bdfgklmnprstvz") + rnd.choice("aeiou") for _ in range(syllables))


def contains_rule(rnd: random.Random) -> tuple[str, str]:
    """A contains string and a text containing it."""
    form = rnd.randrange(3)
    if form == 0:
        text = f"%{token(rnd).upper()}-{rnd.randint(0, 7)}-{token(rnd).upper()}"
    elif form == 1:
        text = f"{token(rnd).capitalize()} {rnd.choice(COMMON)}"
    else:
        text = f"{token(rnd)}: {rnd.choice(COMMON)} {token(rnd)}"
    return text, text


def regex_rule(rnd: random.Random, form: int | None = None) -> tuple[str, str]:
    """A regex and a text it matches; form 0 (one in thirty at random) has no literal to index."""
    a, b, word = token(rnd), token(rnd), rnd.choice(COMMON)
    n = rnd.randint(1, 999)
    if form is None:
        form = 0 if rnd.randrange(30) == 0 else rnd.randint(1, 5)
    width = rnd.randint(3, 12)
    forms = (
        (rf"^[A-Z]{{2}}\d{{{width}}}[a-z]+$", "AB" + "7" * width + "xyz"),
        (rf"(?i){a} (failed|error)", f"{a.upper()} failed"),
        (rf"{a.capitalize()}.*{word}", f"{a.capitalize()} GigabitEthernet0/{n} {word}"),
        (rf"{a.capitalize()} (port|interface) \d+ {b}", f"{a.capitalize()} port {n} {b}"),
        (rf"^\S+ {a}\[\d+\]: {word}", f"{b} {a}[{n}]: {word}"),
        (rf"%{a.upper()}-[0-7]-{b.upper()}\b", f"%{a.upper()}-{n % 8}-{b.upper()}: x"),
    )
    return forms[form]


def oid_rule(rnd: random.Random) -> tuple[str, str]:
    """An OID prefix and an OID under it."""
    parts = [str(rnd.randint(1, 60000))] + [
        str(rnd.randint(1, 40)) for _ in range(rnd.randint(0, 3))
    ]
    prefix = "1.3.6.1.4.1." + ".".join(parts)
    return ("." + prefix if rnd.random() < 0.2 else prefix), prefix + f".{rnd.randint(0, 9)}.0"


# Each set starts with one rule of every kind, so that the smallest set exercises every matcher.
HEAD = ("severity", "contains", "oid_prefix", "regex:0", "regex:1", "regex:2")


def build_rules(size: int, rnd: random.Random) -> tuple[list[Rule], list[tuple[str, str]]]:
    """``size`` rules and, for each, (match kind, a text or OID it matches)."""
    rules: list[Rule] = []
    samples: list[tuple[str, str]] = []
    for rule_id in range(1, size + 1):
        kind, criterion, sample = pick_kind(rule_id, size, rnd)
        rules.append(
            Rule(
                id=rule_id,
                match_type="contains" if kind == "severity" else kind,
                match_string=criterion if kind in ("contains", "regex") else None,
                trap_oid=criterion if kind == "oid_prefix" else None,
                syslog_severity=(
                    rnd.randint(2, 5)
                    if kind == "severity"
                    else (rnd.randint(0, 7) if rnd.random() < 0.3 else None)
                ),
                priority=rnd.randint(1, 50) if kind == "severity" else rnd.randint(1, 1000),
                prod_handling=rnd.choice(
                    ("Page_and_ticket", "Ticket_only", "Email_only", "Log_only")
                ),
                dev_handling=rnd.choice(("Ticket_only", "Email_only", "Log_only", "Suppress")),
                team_assignment=rnd.choice(TEAMS),
            )
        )
        samples.append((kind, sample))
    return rules, samples


def pick_kind(rule_id: int, size: int, rnd: random.Random) -> tuple[str, str | None, str]:
    """The kind of rule ``rule_id``, its criterion and a sample it matches."""
    if rule_id <= len(HEAD):
        kind, _, form = HEAD[rule_id - 1].partition(":")
    elif rule_id % 2000 == 0:  # a few more severity-only rules in large sets
        kind, form = "severity", ""
    else:
        pick = rnd.random()
        kind = "contains" if pick < 0.4 else "regex" if pick < 0.8 else "oid_prefix"
        form = ""
    if kind == "severity":
        return kind, None, ""
    if kind == "regex":
        return (kind, *regex_rule(rnd, int(form) if form else None))
    return (kind, *(contains_rule(rnd) if kind == "contains" else oid_rule(rnd)))


def build_events(count: int, samples: list[tuple[str, str]], rnd: random.Random) -> list[Event]:
    """Syslog-like events; about a third carry one rule's sample text or OID."""
    events = []
    for _ in range(count):
        words = [rnd.choice(COMMON) for _ in range(rnd.randint(6, 15))]
        trap_oid = None
        if rnd.random() < 0.35:
            kind, sample = rnd.choice(samples)
            if kind == "oid_prefix":
                trap_oid = sample
            elif sample:
                words.insert(rnd.randint(0, len(words)), sample)
        elif rnd.random() < 0.2:
            trap_oid = f"1.3.6.1.4.1.{rnd.randint(1, 60000)}.{rnd.randint(1, 9)}"
        host = f"host{rnd.randint(1, 500)}"
        stamp = f"{rnd.choice(MONTHS)} {rnd.randint(1, 28):2d} {rnd.randint(0, 23):02d}:00:00"
        message = f"{stamp} {host} {rnd.choice(COMMON)}[{rnd.randint(1, 99999)}]: " + " ".join(
            words
        )
        severity = rnd.choice((None, 0, 1, 2, 3, 4, 5, 6, 7))
        events.append(Event(message, trap_oid, severity, host))
    return events


def snapshot_for(rules: list[Rule], rnd: random.Random) -> tuple[RuleSnapshot, float]:
    """The compiled snapshot and how long compiling took."""
    started = time.process_time()
    ruleset = compile_rules(rules)
    elapsed = time.process_time() - started
    assert not ruleset.errors, ruleset.errors[:3]
    dev_hosts = frozenset(f"host{rnd.randint(1, 500)}" for _ in range(50))
    teams = {f"host{rnd.randint(1, 500)}": rnd.choice(TEAMS) for _ in range(100)}
    return RuleSnapshot(ruleset, dev_hosts, teams, version="bench"), elapsed


def classify(events: list[Event], snapshot: RuleSnapshot) -> tuple[float, int]:
    """Seconds to decide every event, and how many matched a rule."""
    matched = 0
    started = time.process_time()
    for event in events:
        decision = decide(
            event.message, event.trap_oid, event.severity, event.hostname, snapshot, "NOC"
        )
        matched += decision.matched
    return time.process_time() - started, matched


def main() -> None:
    """Run the benchmark and print one row per rule-set size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, nargs="+", default=[10, 10000])
    parser.add_argument("--events", type=int, default=50000)
    parser.add_argument("--repeat", type=int, default=5, help="timed passes; the best counts")
    args = parser.parse_args()

    setups = []
    for size in args.rules:
        rnd = random.Random(f"{SEED}-{size}")
        rules, samples = build_rules(size, rnd)
        snapshot, compile_seconds = snapshot_for(rules, rnd)
        setups.append((size, snapshot, compile_seconds, build_events(args.events, samples, rnd)))

    # A first untimed pass fills RE2's lazily built DFA caches, as traffic would. Timed passes then
    # alternate between sizes, so that drift in machine load hits them alike, and the fastest
    # pass of each size counts: on a shared machine, slower passes measure the neighbours. Passes
    # are timed in CPU time of this process, so that time spent waiting for a core does not count.
    timings: dict[int, list[float]] = {size: [] for size, *_ in setups}
    matches: dict[int, int] = {}
    for _size, snapshot, _, events in setups:
        classify(events, snapshot)
    for _ in range(args.repeat):
        for size, snapshot, _, events in setups:
            seconds, matches[size] = classify(events, snapshot)
            timings[size].append(seconds)

    print(
        f"{'rules':>7} {'compile s':>10} {'events/s':>10} {'us/event':>9} {'matched':>8} {'ratio':>6}"
    )
    baseline = None
    for size, _, compile_seconds, events in setups:
        rate = len(events) / min(timings[size])
        baseline = baseline or rate
        print(
            f"{size:>7} {compile_seconds:>10.3f} {rate:>10,.0f} {1e6 / rate:>9.2f}"
            f" {matches[size] / len(events):>8.1%} {rate / baseline:>6.2f}"
        )


if __name__ == "__main__":
    main()
