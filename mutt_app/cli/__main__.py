"""``python -m mutt_app.cli``: the ``mutt`` command."""

from mutt_app.cli import main

main()
