"""The layer contracts (setup.cfg ``[importlinter]``) are real: a wrong import breaks them.

CI runs ``lint-imports`` on the tree as it is; these tests show the contracts catch what they are
for, on a copy of the package with one import added.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_copy(
    tmp_path: Path, module: str | None = None, line: str = ""
) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` on a copy of mutt_app where ``module`` (if any) gains ``line``."""
    shutil.copytree(
        ROOT / "mutt_app", tmp_path / "mutt_app", ignore=shutil.ignore_patterns("static")
    )
    shutil.copy(ROOT / "setup.cfg", tmp_path / "setup.cfg")
    if module is not None:
        target = tmp_path / "mutt_app" / module
        target.write_text(target.read_text() + f"\n{line}\n")
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


pytestmark = pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is not installed")


def test_the_tree_as_it_is_keeps_every_contract(tmp_path: Path) -> None:
    result = _lint_copy(tmp_path)
    assert result.returncode == 0, result.stdout
    assert "0 broken." in result.stdout


def test_a_domain_module_importing_the_web_layer_breaks_the_layers(tmp_path: Path) -> None:
    result = _lint_copy(tmp_path, "events/__init__.py", "import mutt_app.web.context  # noqa")
    assert result.returncode == 1, result.stdout
    assert "mutt_app.events is not allowed to import mutt_app.web" in result.stdout


def test_an_import_cycle_breaks_the_contracts(tmp_path: Path) -> None:
    # runtime imports ledger; ledger importing runtime closes a cycle (and reaches up a layer).
    result = _lint_copy(tmp_path, "ledger.py", "import mutt_app.runtime  # noqa")
    assert result.returncode == 1, result.stdout
    assert "No import cycle anywhere in mutt_app BROKEN" in result.stdout
    assert "mutt_app.ledger is not allowed to import mutt_app.runtime" in result.stdout
