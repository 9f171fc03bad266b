"""``mutt run``: which parts it plans, its restart policy, and the supervisor on trivial children."""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import redis
import requests
from click.testing import CliRunner

from mutt_app.cli import Context
from mutt_app.config import Settings, load_settings
from mutt_app.db.engine import make_engine, upgrade
from mutt_app.devtools import embedded_redis, launcher
from mutt_app.devtools.database import LaunchError, prepare_database
from mutt_app.devtools.parts import PART_NAMES, plan_parts, split_names
from mutt_app.devtools.supervisor import Part, RestartPolicy, Supervisor
from tests.services import free_port, wait_for

REDIS_URL = "redis://127.0.0.1:6391/0"
SINK_URL = "http://127.0.0.1:8099/webhook"


def _settings(tmp_path: Path, **env: str) -> Settings:
    return load_settings({"MUTT_DATA_DIR": str(tmp_path), **env})


def _plan(settings: Settings, only: str | None = None, without: str | None = None) -> list[Part]:
    return plan_parts(
        settings, split_names(only), split_names(without), REDIS_URL, SINK_URL, python="py"
    )


# --- plan_parts ------------------------------------------------------------------------------------


def test_the_embedded_default_runs_every_part_in_start_order(tmp_path: Path) -> None:
    parts = {p.name: p for p in _plan(_settings(tmp_path))}
    expected = [
        n for name in PART_NAMES for n in ([name, "worker-2"] if name == "worker" else [name])
    ]
    assert list(parts) == expected

    redis_part = parts["redis"]
    assert redis_part.port == 6391 and redis_part.url == REDIS_URL
    argv = list(redis_part.argv)
    assert argv[argv.index("--dir") + 1] == str(tmp_path.resolve() / "redis")
    assert argv[argv.index("--appendonly") + 1] == "yes"
    assert argv[argv.index("--save") + 1] == ""
    assert argv[argv.index("--bind") + 1] == "127.0.0.1"

    sink = parts["moog-sink"]
    assert sink.port == 8099
    assert list(sink.argv) == [
        "py", "-m", "mutt_app.devtools", "moog-sink", "--host", "127.0.0.1", "--port", "8099",
    ]  # fmt: skip
    for name in ("ingest", "web", "worker", "worker-2", "forwarder", "beat", "flower"):
        assert parts[name].env["REDIS_URL"] == REDIS_URL
        assert parts[name].env["MOOG_WEBHOOK_URL"] == SINK_URL
        assert parts[name].env["PYTHONUNBUFFERED"] == "1"
        assert "redis" in parts[name].needs


def test_commands_and_ports_of_the_mutt_parts(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path, SERVER_PORT_INGESTOR="18080", SERVER_PORT_WEBUI="18090", FLOWER_PORT="15555"
    )
    parts = {p.name: p for p in _plan(settings)}
    ingest = list(parts["ingest"].argv)
    assert ingest[:3] == ["py", "-m", "gunicorn"]
    assert ingest[ingest.index("--bind") + 1] == "0.0.0.0:18080"
    assert ingest[-1] == "mutt_app.web:create_ingest_app()"
    assert parts["ingest"].port == 18080
    assert parts["ingest"].url == "http://127.0.0.1:18080/api/v2/ingest"
    assert parts["web"].argv[-1] == "mutt_app.web:create_app()" and parts["web"].port == 18090
    # The classify worker: two solo-pool processes, each its own consumer with its own node name.
    for n, name in enumerate(("worker", "worker-2"), start=1):
        assert list(parts[name].argv) == [
            "py", "-m", "celery", "-A", "mutt_app", "worker", "-Q", "mutt.classify,mutt.maintenance",
            "-P", "solo", "-l", "INFO", "-n", f"classify-{n}@%h", "--without-gossip",
            "--without-mingle",
        ]  # fmt: skip
        assert parts[name].port is None
        assert parts[name].needs == ("redis",)
        assert parts[name].env == parts["forwarder"].env  # one samples directory for the host
    forwarder = list(parts["forwarder"].argv)
    assert forwarder[forwarder.index("-Q") + 1] == "mutt.forward.page,mutt.forward"  # both lanes
    assert forwarder[forwarder.index("-P") + 1] == "threads"
    assert parts["forwarder"].needs == ("redis", "moog-sink")
    beat = list(parts["beat"].argv)
    assert beat[beat.index("-s") + 1] == str(tmp_path.resolve() / "celerybeat-schedule")
    flower = list(parts["flower"].argv)
    assert flower[-2:] == ["--port=15555", "--address=127.0.0.1"]
    assert "--persistent=True" in flower
    assert f"--db={tmp_path.resolve() / 'flower.db'}" in flower
    assert parts["flower"].port == 15555


def test_a_configured_redis_is_used_not_started(tmp_path: Path) -> None:
    for env in ({"REDIS_URL": "redis://cache:6379/0"}, {"REDIS_HOST": "cache"}):
        parts = _plan(_settings(tmp_path, **env))
        assert "redis" not in [p.name for p in parts]
        assert all("REDIS_URL" not in p.env for p in parts)


def test_a_configured_moog_is_used_and_no_sink_started(tmp_path: Path) -> None:
    parts = _plan(_settings(tmp_path, MOOG_WEBHOOK_URL="https://moog.example/webhook"))
    assert "moog-sink" not in [p.name for p in parts]
    assert all("MOOG_WEBHOOK_URL" not in p.env for p in parts)


def test_only_and_without_pick_parts(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    workers = ["worker", "worker-2"]  # "worker" names the classify worker's processes
    assert [p.name for p in _plan(settings, only="worker, redis")] == ["redis", *workers]
    names = [p.name for p in _plan(settings, without="flower,web")]
    assert names == ["redis", "moog-sink", "ingest", *workers, "forwarder", "beat"]
    assert [p.name for p in _plan(settings, only="redis,worker", without="redis")] == workers
    # Without the private Redis the children use the configured (default) one, not a dead port.
    assert "REDIS_URL" not in _plan(settings, only="worker")[0].env


@pytest.mark.parametrize(
    ("only", "without", "message"),
    [
        ("worker,wroker", None, "--only: unknown part wroker (parts: redis, moog-sink,"),
        (None, "celery", "--without: unknown part celery"),
        ("redis,worker", "redis,worker", "nothing to run"),
    ],
)
def test_bad_selections_are_refused(
    tmp_path: Path, only: str | None, without: str | None, message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        _plan(_settings(tmp_path), only, without)


def test_only_a_part_these_settings_do_not_start_is_refused(tmp_path: Path) -> None:
    settings = _settings(tmp_path, REDIS_URL="redis://cache:6379/0")
    with pytest.raises(ValueError, match="--only redis: not started when REDIS_URL"):
        _plan(settings, only="redis")


def test_pick_port_takes_the_first_free_preferred_port() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken, free = busy.getsockname()[1], free_port()
        assert embedded_redis.pick_port([taken, free]) == free
        assert embedded_redis.pick_port([taken]) not in (taken, 0)


def test_split_names() -> None:
    assert split_names(None) is None
    assert split_names(" worker, beat ,,") == ("worker", "beat")


# --- the run command's refusals ----------------------------------------------------------------------


def test_run_refuses_an_unknown_part(tmp_path: Path) -> None:
    result = CliRunner().invoke(launcher.run, ["--only", "nope"], obj=Context(_settings(tmp_path)))
    assert result.exit_code == 2
    assert "unknown part nope" in result.output


def test_run_says_to_install_redis_when_there_is_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(launcher, "find_redis_server", lambda: None)
    result = CliRunner().invoke(launcher.run, ["--only", "redis"], obj=Context(_settings(tmp_path)))
    assert result.exit_code == 1
    assert "redis-server not found: install it (apt-get install redis-server)" in result.output


# --- restart policy ----------------------------------------------------------------------------------


def test_backoff_doubles_and_a_crash_loop_is_given_up() -> None:
    policy = RestartPolicy()
    now, delays = 0.0, []
    for _ in range(5):
        delays.append(policy.record_death(now, uptime=0.5))
        now += (delays[-1] or 0) + 0.5
    assert delays == [1, 2, 4, 8, None]  # the fifth death within 60 s


def test_backoff_is_capped_and_spaced_out_deaths_are_not_given_up() -> None:
    policy = RestartPolicy()
    delays = [policy.record_death(i * 25.0, uptime=20.0) for i in range(8)]
    assert delays == [1, 2, 4, 8, 16, 30, 30, 30]


def test_a_part_that_stayed_up_starts_again_from_one_second() -> None:
    policy = RestartPolicy()
    assert [policy.record_death(t, uptime=1) for t in (0, 2, 5)] == [1, 2, 4]
    assert policy.record_death(70, uptime=65) == 1


def test_old_deaths_leave_the_window() -> None:
    policy = RestartPolicy(max_deaths=3, window=10)
    assert policy.record_death(0, 0.1) is not None
    assert policy.record_death(1, 0.1) is not None
    assert policy.record_death(10.5, 0.1) is not None  # the first has left the window
    assert policy.record_death(11.5, 0.1) is not None  # and the second
    assert policy.record_death(12, 0.1) is None  # three within 10 s


# --- the supervisor on trivial children ----------------------------------------------------------


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


UNBUFFERED = {"PYTHONUNBUFFERED": "1"}


class Output:
    """Lines of a child's stdout, collected by a thread, with a wait."""

    def __init__(self, stream) -> None:  # type: ignore[no-untyped-def]
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:  # type: ignore[no-untyped-def]
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def wait(self, pattern: str, timeout: float = 10, count: int = 1) -> list[re.Match[str]]:
        def found() -> list[re.Match[str]]:
            return [m for m in map(re.compile(pattern).search, list(self.lines)) if m]

        try:
            wait_for(lambda: len(found()) >= count, timeout, pattern)
        except TimeoutError as exc:
            raise AssertionError(f"no {pattern!r} in:\n{self.text}") from exc
        return found()


def _pids(text: str) -> set[int]:
    return {int(pid) for pid in re.findall(r"started \S+ \(pid (\d+)\)", text)}


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


SUPERVISOR_SCRIPT = """
import sys
from mutt_app.devtools.supervisor import Part, RestartPolicy, Supervisor

port = int(sys.argv[1])
env = {"PYTHONUNBUFFERED": "1"}
parts = [
    Part("http", [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)], env,
         port=port, url=f"http://127.0.0.1:{port}/"),
    Part("sleeper", [sys.executable, "-c",
         "import time; print('sleeping', flush=True); time.sleep(60)"], env, needs=("http",)),
]
policy = lambda: RestartPolicy(base=0.2, cap=1)
sys.exit(Supervisor(parts, start_timeout=10, stop_timeout=3, policy_factory=policy).run())
"""


def test_supervisor_starts_restarts_and_stops_everything_on_sigterm(tmp_path: Path) -> None:
    script = tmp_path / "supervise.py"
    script.write_text(textwrap.dedent(SUPERVISOR_SCRIPT))
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(script), str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **UNBUFFERED},
    )
    out = Output(process.stdout)
    try:
        out.wait(r"MUTT is running")
        out.wait(rf"\[mutt\]   http\s+http://127\.0\.0\.1:{port}/\s+pid \d+")
        out.wait(r"\[mutt\]   sleeper\s+-\s+pid \d+")
        out.wait(r"^\[sleeper\] sleeping$")
        # The table comes only once the port accepts connections.
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass

        first = int(out.wait(r"started sleeper \(pid (\d+)\)")[0].group(1))
        os.kill(first, signal.SIGKILL)
        out.wait(r"sleeper was killed by SIGKILL; restarting in 0\.2 s")
        second = int(out.wait(r"started sleeper \(pid (\d+)\)", count=2)[1].group(1))
        assert second != first
        out.wait(r"^\[sleeper\] sleeping$", count=2)

        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)
    out._thread.join(5)
    text = out.text
    assert "[mutt] SIGTERM: stopping" in text
    assert text.rstrip().endswith("[mutt] stopped")
    # The sleeper needs http: it is stopped first.
    assert text.index("sleeper stopped") < text.index("http stopped")
    pids = _pids(text)
    assert len(pids) == 3
    assert all(_gone(pid) for pid in pids), f"left running: {[p for p in pids if not _gone(p)]}"


def test_supervisor_reports_a_part_that_does_not_start_listening() -> None:
    port = free_port()
    parts = [Part("mute", _python("print('no socket here'); import time; time.sleep(30)"),
                  UNBUFFERED, port=port)]  # fmt: skip
    out = io.StringIO()
    started = time.monotonic()
    assert Supervisor(parts, out=out, start_timeout=1.5, stop_timeout=2).run() == 1
    assert time.monotonic() - started < 8
    text = out.getvalue()
    assert f"mute did not accept connections on port {port} within 1.5 s" in text
    assert "    no socket here" in text  # the tail of its output
    assert "MUTT is running" not in text
    assert all(_gone(pid) for pid in _pids(text))


def test_supervisor_gives_up_on_a_crash_loop_and_stops_the_rest() -> None:
    parts = [
        Part("steady", _python("import time; time.sleep(30)"), UNBUFFERED),
        Part("crasher", _python("import sys; print('boom'); sys.exit(3)"), UNBUFFERED),
    ]
    out = io.StringIO()

    def policy() -> RestartPolicy:
        return RestartPolicy(base=0.05, cap=0.1, max_deaths=3, window=30)

    assert Supervisor(parts, out=out, policy_factory=policy, stop_timeout=2).run() == 1
    text = out.getvalue()
    assert text.count("crasher exited with status 3; restarting in") == 2
    assert "crasher exited with status 3: 3 deaths within 30 s, giving up" in text
    assert "[crasher] boom" in text and "    boom" in text
    assert "steady stopped" in text
    assert all(_gone(pid) for pid in _pids(text))


def test_supervisor_refuses_a_port_already_in_use() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        parts = [Part("web", _python("pass"), port=port)]
        out = io.StringIO()
        assert Supervisor(parts, out=out).run() == 1
    assert f"port {port} (for web) is already in use" in out.getvalue()
    assert "started" not in out.getvalue()


RUN_SCRIPT = """
import sys
from mutt_app.cli import Context
from mutt_app.config import load_settings
from mutt_app.devtools.launcher import run

run.main(["--only", "redis"], obj=Context(load_settings()), prog_name="mutt run")
"""


def test_mutt_run_only_redis_starts_a_private_persistent_redis(tmp_path: Path) -> None:
    if embedded_redis.find_redis_server() is None:
        pytest.skip("no redis-server")
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(RUN_SCRIPT))
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("REDIS_", "DATABASE_", "DB_"))
    }
    env.update(MUTT_DATA_DIR=str(tmp_path / "data"), PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    out = Output(process.stdout)
    try:
        url = out.wait(r"\[mutt\]   redis\s+(redis://127\.0\.0\.1:(\d+)/0)")[0].group(1)
        client = redis.Redis.from_url(url)
        assert client.set("k", "v")
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("dir")["dir"] == str((tmp_path / "data" / "redis").resolve())
        client.close()
        process.send_signal(signal.SIGINT)  # Ctrl-C
        assert process.wait(15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)
    out._thread.join(5)
    assert "[mutt] SIGINT: stopping" in out.text
    assert (tmp_path / "data" / "redis" / "appendonlydir").exists()
    assert all(_gone(pid) for pid in _pids(out.text))


# --- the database step -----------------------------------------------------------------------------


def test_the_embedded_database_is_migrated_and_seeded_once(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    engine = make_engine(settings)
    try:
        first = prepare_database(engine, settings)
        again = prepare_database(engine, settings)
    finally:
        engine.dispose()
    assert first.endswith("seed rules: 4 added")
    assert again.endswith("seed rules: 0 added")


def test_a_configured_database_is_only_checked(tmp_path: Path) -> None:
    settings = _settings(tmp_path, DATABASE_URL=f"sqlite:///{tmp_path / 'other.db'}")
    engine = make_engine(settings)
    try:
        with pytest.raises(LaunchError, match=r"at revision base, not \w+: run `mutt db upgrade`"):
            prepare_database(engine, settings)
        upgrade(engine)
        assert "at revision" in prepare_database(engine, settings)
    finally:
        engine.dispose()


def test_an_unreachable_database_is_named(tmp_path: Path) -> None:
    url = f"postgresql://mutt@127.0.0.1:{free_port()}/mutt"
    settings = _settings(tmp_path, DATABASE_URL=url)
    engine = make_engine(settings)
    try:
        with pytest.raises(LaunchError, match=r"is unreachable: .*refused"):
            prepare_database(engine, settings)
    finally:
        engine.dispose()


HA_RUN_SCRIPT = """
from mutt_app.cli import Context
from mutt_app.config import load_settings
from mutt_app.devtools.launcher import run

run.main(["--ha", "--only", "redis,ingest"], obj=Context(load_settings()), prog_name="mutt run")
"""


def test_mutt_run_ha_starts_a_primary_two_replicas_and_sentinels_and_accepts_an_event(
    tmp_path: Path,
) -> None:
    if embedded_redis.find_redis_server() is None:
        pytest.skip("no redis-server")
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(HA_RUN_SCRIPT))
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("REDIS_", "DATABASE_", "DB_", "INGEST_"))
    }
    env.update(
        MUTT_DATA_DIR=str(tmp_path / "data"),
        PYTHONUNBUFFERED="1",
        SERVER_PORT_INGESTOR=str(free_port()),
    )
    process = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    out = Output(process.stdout)
    try:
        ingest = out.wait(r"\[mutt\]   ingest\s+(http://\S+)", timeout=90)[0].group(1)
        sentinel_url = out.wait(r"\[mutt\]   sentinel-1\s+sentinel://127\.0\.0\.1:(\d+)")[0]
        sentinel = redis.Redis(port=int(sentinel_url.group(1)))
        master = sentinel.sentinel_get_master_addr_by_name("mymaster")
        sentinel.close()
        event = {"timestamp": "2026-01-01T00:00:00Z", "hostname": "ha", "message": "hello"}
        # Accepted means replicated (INGEST_MIN_REPLICAS 1 through Sentinel): a 200 needs a
        # replica to have acknowledged the event.
        # While the replicas make their first sync that is a 503, never anything else.
        answers = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            answers.append(requests.post(ingest, json=[event], timeout=10))
            if answers[-1].status_code != 503:
                break
            time.sleep(0.5)
        assert answers[-1].status_code == 200, answers[-1].text
        assert {a.status_code for a in answers[:-1]} <= {503}
        primary = redis.Redis(host=master[0], port=int(master[1]))
        wait_for(lambda: primary.info("replication")["connected_slaves"] == 2, 30, "two replicas")
        primary.close()
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0
    finally:
        # A failed assertion leaves the launcher running: stop it as Ctrl-C does, so that it stops
        # its children (a SIGKILL would leave them behind).
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
    out._thread.join(5)
    assert all(_gone(pid) for pid in _pids(out.text))


def test_mutt_runs_gunicorns_open_no_control_socket(tmp_path: Path) -> None:
    # gunicorn >= 25.1 opens ~/.gunicorn/gunicorn.ctl by default, one socket for every gunicorn of
    # the user; `mutt run`'s two gunicorns turn it off.
    parts = {p.name: p for p in _plan(_settings(tmp_path))}
    printed = subprocess.run(
        [sys.executable, "-m", "gunicorn", "--no-control-socket", "--print-config", "x:y()"],
        capture_output=True, text=True, timeout=60,
    ).stdout  # fmt: skip
    assert re.search(r"^control_socket_disable\s+= True$", printed, re.M), printed
    for name in ("ingest", "web"):
        assert "--no-control-socket" in parts[name].argv
