"""The ``mutt`` command: manage MUTT's database, and operate it; one module per command group.

``mutt run``, ``mutt moog-sink`` and ``mutt send`` are developer tools: :mod:`mutt_app.devtools`
adds them to this group for the installed ``mutt`` command.
"""

from mutt_app.cli.context import Context
from mutt_app.cli.group import main

__all__ = ["Context", "main"]
