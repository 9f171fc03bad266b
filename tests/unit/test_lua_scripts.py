"""Every Lua script, with the shared prelude in front, compiles on a real Redis and ships installed."""

from __future__ import annotations

import configparser
import fnmatch
from importlib import resources
from pathlib import Path

import pytest
import redis

from mutt_app.lua.loader import PRELUDE, LuaScript

ROOT = resources.files("mutt_app")
SCRIPTS = sorted(
    str(path.relative_to(Path(str(ROOT))))
    for path in Path(str(ROOT)).rglob("lua/*.lua")
    if path.name != "prelude.lua"
)


def _script(relative: str) -> LuaScript:
    folder, name = relative.removesuffix(".lua").rsplit("/lua/", 1)
    return LuaScript(f"mutt_app.{folder.replace('/', '.')}", name)


def test_the_scripts_are_found() -> None:
    assert "holdback/lua/dedup.lua" in SCRIPTS
    assert "forwarding/lua/circuit.lua" in SCRIPTS


@pytest.mark.parametrize("relative", SCRIPTS)
def test_each_script_compiles_with_the_prelude(redis_client: redis.Redis, relative: str) -> None:
    script = _script(relative)
    assert script.source.startswith(PRELUDE)
    # SCRIPT LOAD compiles without running: a syntax error in the prelude or the file fails here.
    sha = redis_client.script_load(script.source)
    assert sha == script.register(redis_client).sha
    assert redis_client.script_exists(sha) == [True]


def test_the_prelude_compiles_alone(redis_client: redis.Redis) -> None:
    redis_client.script_load(PRELUDE)


def test_the_prelude_reads_the_redis_clock(redis_client: redis.Redis) -> None:
    seconds, micros = redis_client.time()
    now = redis_client.eval(f"{PRELUDE}\nreturn now_ms()", 0)
    assert abs(int(now) - (seconds * 1000 + micros // 1000)) < 5000


def test_setup_cfg_ships_every_script() -> None:
    config = configparser.ConfigParser()
    config.read(Path(__file__).parents[2] / "setup.cfg")
    patterns = [p.strip() for p in config["options.package_data"]["mutt_app"].split(",")]
    for relative in [*SCRIPTS, "lua/prelude.lua"]:
        assert any(fnmatch.fnmatch(relative, p) for p in patterns), relative
