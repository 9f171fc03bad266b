"""The installed ``mutt`` command: the production commands plus the developer tools.

``mutt run`` (the whole stack on a laptop), ``mutt moog-sink`` and ``mutt send`` live here, above
the CLI, so that :mod:`mutt_app.cli` never imports them; this group is the console script's entry
point, and ``python -m mutt_app.devtools`` runs it.
"""

from __future__ import annotations

from mutt_app.cli.group import with_commands
from mutt_app.devtools.launcher import run
from mutt_app.devtools.moog_sink import moog_sink
from mutt_app.devtools.send import send

main = with_commands(run, moog_sink, send)
