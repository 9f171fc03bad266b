"""End-to-end tests share ``make_stack`` (tests/conftest.py) with the chaos tests.

``StackFactory`` is re-exported here because the e2e tests import it from this module.
"""

from __future__ import annotations

from tests.e2e.stack import StackFactory

__all__ = ["StackFactory"]
