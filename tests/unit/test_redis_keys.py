"""The table of Redis keys in docs/architecture.md ("What MUTT keeps in Redis, and what bounds it")
stays honest: every key prefix the code spells is in it, and every MUTT key in it is still written."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## What MUTT keeps in Redis, and what bounds it"
# A string literal naming a Redis key, channel or prefix: "mutt:" and a name (not "mutt: <text>").
LITERAL = re.compile(r"""["'](mutt:[a-z][A-Za-z0-9_:.\-]*)""")


def _table_keys() -> set[str]:
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return {key for row in rows for key in re.findall(r"`([^`]+)`", row.split(" | ", 1)[0])}


def _code_prefixes() -> set[str]:
    found = set()
    for path in (ROOT / "mutt_app").rglob("*.py"):
        found.update(m.rstrip(":") for m in LITERAL.findall(path.read_text()))
    found.update(LITERAL.findall((ROOT / "celeryconfig.py").read_text()))
    return found


def test_every_redis_key_prefix_in_the_code_is_in_the_table() -> None:
    keys = _table_keys()
    prefixes = _code_prefixes()
    assert "mutt:lastseen" in prefixes and "mutt:dedup" in prefixes  # the scan finds them
    missing = {p for p in prefixes if not any(k.startswith(p) for k in keys)}
    assert missing == set(), f"add these to the table in docs/architecture.md: {sorted(missing)}"


def test_every_mutt_key_in_the_table_is_still_written_by_the_code() -> None:
    prefixes = _code_prefixes()
    stale = {
        key
        for key in _table_keys()
        if key.startswith("mutt:") and not any(key.startswith(p) for p in prefixes)
    }
    assert stale == set(), f"the table names keys no code writes: {sorted(stale)}"
