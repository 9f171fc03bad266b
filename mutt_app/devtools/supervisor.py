"""The supervisor of ``mutt run``: parts as child processes, restarted when they die, stopped in order.

:class:`Supervisor` runs any list of :class:`Part`, so its behaviour (output prefixes, restarts with
backoff, orderly shutdown) is tested on trivial child commands.

Each child runs in its own session (process group): Ctrl-C in the terminal reaches only the
supervisor, which then stops the children itself, in an order that keeps what others need (Redis)
up until they are gone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

TAIL_LINES = 40


@dataclass(frozen=True)
class Part:
    """One child process: its command, extra environment, and the port it listens on (if any).

    ``needs`` names parts that must accept connections before this one starts, and that are stopped
    only after this one has exited. ``url`` is what the table shows.
    """

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    port: int | None = None
    needs: tuple[str, ...] = ()
    url: str | None = None


# --- restart policy (pure) ------------------------------------------------------------------------


class RestartPolicy:
    """When to restart a part that died: 1 s, 2 s, 4 s, ... capped; give up on a crash loop.

    The delay doubles with each death in a row; a part that had stayed up for ``stable_after``
    seconds starts again from ``base``. ``max_deaths`` deaths within ``window`` seconds mean it will
    not get better by itself: :meth:`record_death` then answers None.
    """

    def __init__(
        self,
        base: float = 1.0,
        cap: float = 30.0,
        max_deaths: int = 5,
        window: float = 60.0,
        stable_after: float = 60.0,
    ) -> None:
        self.base, self.cap = base, cap
        self.max_deaths, self.window, self.stable_after = max_deaths, window, stable_after
        self._deaths: deque[float] = deque()
        self._streak = 0

    def record_death(self, now: float, uptime: float) -> float | None:
        """Note a death at ``now`` after ``uptime`` seconds up; the delay before restarting, or None."""
        self._deaths.append(now)
        while self._deaths and now - self._deaths[0] >= self.window:
            self._deaths.popleft()
        if len(self._deaths) >= self.max_deaths:
            return None
        self._streak = 1 if uptime >= self.stable_after else self._streak + 1
        return min(self.base * 2 ** (self._streak - 1), self.cap)

    @property
    def recent_deaths(self) -> int:
        """Deaths inside the current window (as of the last one recorded)."""
        return len(self._deaths)


# --- supervisor -----------------------------------------------------------------------------------


class _Child:
    """A part's running state: its process (None while waiting to restart) and its last lines."""

    def __init__(self, part: Part, policy: RestartPolicy) -> None:
        self.part = part
        self.policy = policy
        self.process: subprocess.Popen[bytes] | None = None
        self.reader: threading.Thread | None = None
        self.started_at = 0.0
        self.restart_at: float | None = None
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)

    @property
    def name(self) -> str:
        return self.part.name

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def tail_text(self, lines: int = 15) -> str:
        shown = list(self.tail)
        while shown and not shown[-1].strip():
            shown.pop()
        shown = shown[-lines:]
        if not shown:
            return "    (no output)"
        return "\n".join(f"    {line}" for line in shown)


class Supervisor:
    """Runs parts as child processes until SIGINT/SIGTERM, restarting the ones that die.

    :meth:`run` starts the parts in order (each after the ports of the parts it needs accept
    connections), prints where they listen (and ``notes`` under that) once every port does, then
    watches them. It returns the
    exit status: 0 after a shutdown asked for by a signal, 1 when a part failed to start or kept
    dying (everything is stopped first either way).
    """

    def __init__(
        self,
        parts: Sequence[Part],
        *,
        out: IO[str] | None = None,
        start_timeout: float = 90.0,
        stop_timeout: float = 10.0,
        policy_factory: Callable[[], RestartPolicy] = RestartPolicy,
        poll_interval: float = 0.1,
        notes: Sequence[str] = (),
    ) -> None:
        self.parts = list(parts)
        self.notes = list(notes)
        self._children = [_Child(part, policy_factory()) for part in self.parts]
        self._out = out or sys.stdout
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._poll = poll_interval
        self._stop = threading.Event()
        self._force = threading.Event()
        self._signal: int | None = None
        self._write_lock = threading.Lock()

    # --- entry point ---

    def run(self) -> int:
        """Run until a signal (exit status 0) or a failure (1); nothing is left running after."""
        previous = self._install_signal_handlers()
        try:
            return self._run()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)

    def _run(self) -> int:
        busy = [p for p in self.parts if p.port is not None and _accepts(p.port)]
        if busy:
            for part in busy:
                self.say(f"port {part.port} (for {part.name}) is already in use")
            self.say("stop what listens there, or choose other ports in the settings")
            return 1
        failure: str | None = None
        try:
            failure = self._start_all()
            if failure is None and not self._stop.is_set():
                self._print_table()
                failure = self._watch()
        finally:
            if self._signal is not None:
                self.say(f"{signal.Signals(self._signal).name}: stopping")
            elif failure:
                self.say(failure)
                self.say("stopping")
            self._shutdown()
        if failure:
            return 1
        self.say("stopped")
        return 0

    # --- starting ---

    def _start_all(self) -> str | None:
        deadline = time.monotonic() + self.start_timeout
        for child in self._children:
            needed = [c for c in self._children if c.name in child.part.needs]
            failure = self._wait_listening(needed, deadline)
            if failure or self._stop.is_set():
                return failure
            failure = self._spawn(child)
            if failure:
                return failure
        return self._wait_listening(self._children, deadline)

    def _wait_listening(self, children: Sequence[_Child], deadline: float) -> str | None:
        """Tick until each of ``children`` with a port accepts connections; a message on failure."""
        while True:
            failure = self._tick()
            if failure or self._stop.is_set():
                return failure
            pending = [
                c
                for c in children
                if c.part.port is not None and not (c.alive and _accepts(c.part.port))
            ]
            if not pending:
                return None
            if time.monotonic() >= deadline:
                child = pending[0]
                return (
                    f"{child.name} did not accept connections on port {child.part.port} "
                    f"within {self.start_timeout:g} s; its last output:\n{child.tail_text()}"
                )
            self._stop.wait(self._poll)

    def _spawn(self, child: _Child) -> str | None:
        env = {**os.environ, **child.part.env}
        try:
            process = subprocess.Popen(
                list(child.part.argv),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            return f"cannot start {child.name} ({child.part.argv[0]}): {exc}"
        child.process = process
        child.started_at = time.monotonic()
        child.restart_at = None
        assert process.stdout is not None
        child.reader = threading.Thread(
            target=self._pump, args=(child, process.stdout), name=f"out-{child.name}", daemon=True
        )
        child.reader.start()
        self.say(f"started {child.name} (pid {process.pid})")
        return None

    def _pump(self, child: _Child, stream: IO[bytes]) -> None:
        # One thread per child: a chatty child never waits on a quiet one.
        with stream:
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                child.tail.append(line)
                self._write(f"[{child.name}] {line}")

    # --- watching ---

    def _watch(self) -> str | None:
        while not self._stop.is_set():
            failure = self._tick()
            if failure:
                return failure
            self._stop.wait(self._poll)
        return None

    def _tick(self) -> str | None:
        """Notice deaths, schedule and perform restarts; a message when a part is given up on."""
        now = time.monotonic()
        for child in self._children:
            if child.process is not None and child.process.poll() is not None:
                failure = self._died(child, now)
                if failure:
                    return failure
            if child.restart_at is not None and now >= child.restart_at:
                failure = self._spawn(child)
                if failure:
                    return failure
        return None

    def _died(self, child: _Child, now: float) -> str | None:
        assert child.process is not None
        status = _describe_exit(child.process.returncode)
        self._sweep(child)
        child.process = None
        delay = child.policy.record_death(now, now - child.started_at)
        if delay is None:
            return (
                f"{child.name} {status}: {child.policy.recent_deaths} deaths within "
                f"{child.policy.window:g} s, giving up; its last output:\n{child.tail_text()}"
            )
        self.say(f"{child.name} {status}; restarting in {delay:g} s")
        child.restart_at = now + delay
        return None

    # --- stopping ---

    def _shutdown(self) -> None:
        """Stop in waves: first what no running part needs, in reverse start order."""
        for child in self._children:
            child.restart_at = None
        remaining = list(self._children)
        while remaining:
            wave = [
                c
                for c in remaining
                if not any(c.name in other.part.needs for other in remaining if other is not c)
            ] or remaining  # a cycle in `needs`: stop the rest together
            self._stop_wave(list(reversed(wave)))
            remaining = [c for c in remaining if c not in wave]

    def _stop_wave(self, wave: Sequence[_Child]) -> None:
        running = [c for c in wave if c.alive]
        for child in running:
            assert child.process is not None
            # The leader only: gunicorn and celery stop their own workers gracefully.
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        while any(c.alive for c in running):
            if self._force.is_set() or time.monotonic() >= deadline:
                for child in running:
                    if child.alive:
                        why = (
                            "asked twice"
                            if self._force.is_set()
                            else f"still running after {self.stop_timeout:g} s"
                        )
                        self.say(f"{child.name} {why}: killing it")
                        _killpg(child.process)
                break
            time.sleep(0.05)
        for child in wave:
            if child.process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.process.wait(5)
                self._sweep(child)
                self.say(f"{child.name} stopped ({_describe_exit(child.process.returncode)})")
                child.process = None

    def _sweep(self, child: _Child) -> None:
        """Kill what the part's leader left behind in its process group, then drain its output."""
        # Safe after the leader was reaped: Linux does not reuse a pid still in use as a group id.
        _killpg(child.process)
        if child.reader is not None:
            child.reader.join(2)
            child.reader = None

    # --- signals and output ---

    def _install_signal_handlers(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous: dict[int, Any] = {}
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            previous[signum] = signal.signal(signum, self._on_signal)
        return previous

    def _on_signal(self, signum: int, _frame: object) -> None:
        # No output here: the main thread may hold the write lock when the signal arrives.
        if self._stop.is_set():
            self._force.set()  # a second Ctrl-C: do not wait for graceful exits
        else:
            self._signal = signum
            self._stop.set()

    def stop(self) -> None:
        """Ask :meth:`run` to shut down (as SIGTERM would), from any thread."""
        self._stop.set()

    def say(self, message: str) -> None:
        """A line from the supervisor itself."""
        for line in message.splitlines() or [""]:
            self._write(f"[mutt] {line}")

    def _write(self, line: str) -> None:
        with self._write_lock, contextlib.suppress(OSError, ValueError):
            self._out.write(line + "\n")
            self._out.flush()

    def _print_table(self) -> None:
        rows = [
            (c.name, c.part.url or "-", f"pid {c.process.pid}" if c.process else "restarting")
            for c in self._children
        ]
        name_width = max(len(r[0]) for r in rows)
        url_width = max(len(r[1]) for r in rows)
        lines = ["MUTT is running (Ctrl-C stops everything):"]
        lines += [f"  {n:<{name_width}}  {u:<{url_width}}  {p}" for n, u, p in rows]
        self.say("\n".join([*lines, *self.notes]))


def _accepts(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _killpg(process: subprocess.Popen[bytes] | None) -> None:
    if process is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "is still running"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
    return f"exited with status {code}"
