"""``python -m mutt_app.devtools``: the ``mutt`` command with the developer tools."""

from mutt_app.devtools.command import main

main()
