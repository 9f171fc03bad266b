"""Atomic Redis scripts kept as .lua files, each run with the shared prelude in front of it.

A capability keeps its scripts in its own ``lua/`` folder (``mutt_app/holdback/lua/dedup.lua``) and
declares each once, at import, as a module constant: ``DEDUP_LUA = LuaScript("mutt_app.holdback",
"dedup")``. The files are read with :mod:`importlib.resources`, so an installed package finds them
(setup.cfg ships them as package data). :file:`prelude.lua` holds what many scripts share: the
time from Redis, closing a window, and batch memos, the one way a script makes a batch idempotent.

Lua runs atomically in Redis, so two workers racing on the same key can never both see themselves
as the one that crossed a threshold.
"""

from __future__ import annotations

from importlib import resources

import redis
from redis.commands.core import Script

PRELUDE = resources.files(__package__).joinpath("prelude.lua").read_text(encoding="utf-8")


class LuaScript:
    """One script: ``<package>/lua/<name>.lua`` with the prelude prepended."""

    def __init__(self, package: str, name: str) -> None:
        self.name = f"{package}/lua/{name}.lua"
        body = resources.files(package).joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")
        # The marker line makes a Redis error ("user_script:N") easy to place in the file.
        self.source = f"{PRELUDE}\n-- {self.name}\n{body}"

    def register(self, client: redis.Redis) -> Script:
        """The script bound to ``client``: called, it runs EVALSHA and loads the script on NOSCRIPT
        (in a pipeline, before the pipeline runs), so Redis compiles it once per server."""
        return client.register_script(self.source)
