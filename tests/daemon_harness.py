"""A real `wfbatch daemon` subprocess on a temporary HOME and socket, for tests.

    from tests.daemon_harness import running_daemon

    with running_daemon(env={"WFBATCH_LOCAL__LATENCY_MAX": "0.2"}) as daemon:
        daemon.drop("shots.jsonl", jsonl("a fox", "a cat"))       # rename into the inbox
        daemon.wait_until(lambda: daemon.status()["jobs"]["done"] == 2)
        daemon.get("/v1/jobs", state="done")                     # sync HTTP over the socket
        async with daemon.client() as client: ...                # the real DaemonClient
        daemon.cli("status", "--json")                           # the real CLI, in-process
        daemon.stop()                                            # SIGTERM; returns seconds taken

`running_daemon` waits (bounded) until `/v1/health` answers and always stops the process (SIGTERM,
then SIGKILL after a bound). Paths live under /tmp with short names: a Unix socket path must fit
in 107 bytes, which pytest's tmp_path can exceed. Only loopback is used: the socket, and whatever
provider URLs the caller's `env` points at.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from click.testing import CliRunner, Result

from tests.deadlines import patience, scaled
from wfbatch.cli.main import main as cli_main
from wfbatch.client import DaemonClient

START_TIMEOUT = patience(20.0)
STOP_TIMEOUT = patience(10.0)
"""A clean stop that takes longer is SIGKILLed: `returncode` then says -9, not 0."""
BASE_URL = "http://wfbatch"


def jsonl(*prompts: str, size: int = 64, **fields: Any) -> str:
    """A .jsonl prompt file of tiny images (fast with the `local` provider)."""
    return "".join(json.dumps({"prompt": p, "width": size, "height": size, **fields}) + "\n" for p in prompts)


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without WFBATCH_* and XDG_RUNTIME_DIR, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WFBATCH_") and k != "XDG_RUNTIME_DIR"}
    env.update(extra or {})
    return env


class DaemonFailed(RuntimeError):
    """The daemon did not come up (or went away); the message holds its log."""


@dataclass
class DaemonProcess:
    """One daemon process and its HOME/socket; `start()`/`stop()`/`kill()` may be repeated."""

    home: Path
    socket: Path
    env: dict[str, str] = field(default_factory=dict)
    extra_args: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    starts: int = 0

    @property
    def inbox(self) -> Path:
        return self.home / "inbox"

    @property
    def pid(self) -> int:
        if self.process is None:
            raise DaemonFailed("the daemon is not running")
        return self.process.pid

    # -- life cycle ---------------------------------------------------------------------------

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "wfbatch",
            "daemon",
            "--home",
            str(self.home),
            "--socket",
            str(self.socket),
            *self.extra_args,
        ]

    def spawn(self) -> subprocess.Popen[bytes]:
        """Start the process without waiting for it to answer."""
        self.starts += 1
        self.log_path = self.socket.parent / f"daemon-{self.starts}.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.command(),
                env=clean_env({"WFBATCH_HOME": str(self.home), **self.env}),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        return self.process

    def start(self, timeout: float = START_TIMEOUT) -> None:
        process = self.spawn()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise DaemonFailed(f"the daemon exited with {process.returncode}:\n{self.log()}")
            if self.answers():
                return
            time.sleep(0.05)
        self.kill()
        raise DaemonFailed(f"the daemon did not answer within {timeout:.0f} s:\n{self.log()}")

    def stop(self, timeout: float = STOP_TIMEOUT) -> float:
        """SIGTERM, wait up to `timeout` (then SIGKILL); returns the seconds the exit took."""
        if self.process is None:
            return 0.0
        started = time.monotonic()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(scaled(5))
        return time.monotonic() - started

    def kill(self) -> None:
        """SIGKILL: a crash, as far as the daemon can tell."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(scaled(5))

    def answers(self) -> bool:
        """True when `/v1/health` answers 200 (a raw probe: httpx leaks a socket when the
        connect fails, which pytest's warnings-as-errors would report)."""
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(scaled(2.0))
        try:
            probe.connect(str(self.socket))
            probe.sendall(b"GET /v1/health HTTP/1.0\r\nHost: wfbatch\r\n\r\n")
            return probe.recv(64).startswith(b"HTTP/1.1 200")
        except OSError:
            return False
        finally:
            probe.close()

    @property
    def returncode(self) -> int | None:
        return self.process.poll() if self.process is not None else None

    def log(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    # -- talking to it ------------------------------------------------------------------------

    def http(self, timeout: float = patience(10.0)) -> httpx.Client:
        """A sync HTTP client over the socket (what `curl --unix-socket` does)."""
        return httpx.Client(
            transport=httpx.HTTPTransport(uds=str(self.socket)), base_url=BASE_URL, timeout=timeout
        )

    def client(self) -> DaemonClient:
        """The real async client: `async with daemon.client() as client`."""
        return DaemonClient(self.socket, timeout=patience(10.0))

    def get(self, path: str, **params: Any) -> Any:
        with self.http() as http:
            response = http.get(path, params={k: v for k, v in params.items() if v is not None})
        response.raise_for_status()
        return response.json()

    def post(self, path: str, body: Mapping[str, Any] | None = None) -> httpx.Response:
        with self.http() as http:
            return http.post(path, json=dict(body or {}))

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = self.get("/v1/status")
        return result

    def cli(self, *args: str, columns: int | None = None) -> Result:
        """Run `wfbatch ARGS --socket SOCK` in this process (click's runner); `columns`: the
        terminal's width the tables must fit (rich reads COLUMNS)."""
        env = {"WFBATCH_HOME": str(self.home)}
        if columns is not None:
            env["COLUMNS"] = str(columns)
        return CliRunner().invoke(
            cli_main, [*args, "--socket", str(self.socket)], env=env, catch_exceptions=False
        )

    def drop(self, name: str, content: str | bytes) -> Path:
        """Write the file next to the inbox, then rename it in (the documented way to drop)."""
        staging = self.home / f".staging-{name}"
        staging.write_bytes(content.encode() if isinstance(content, str) else content)
        target = self.inbox / name
        staging.rename(target)
        return target

    def wait_until(self, predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
        """Poll `predicate` until it is truthy (returned), or fail with the daemon's log. `timeout`
        is stretched to `patience(timeout)`: it only bounds a wait that ends when the predicate holds."""
        timeout = patience(timeout)
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout:.0f} s waiting for {what}\n--- log ---\n{self.log()}"
                )
            if self.process is not None and self.process.poll() is not None:
                raise DaemonFailed(f"the daemon exited with {self.process.returncode}:\n{self.log()}")
            time.sleep(0.05)

    def wait_for_jobs(
        self, predicate: Callable[[dict[str, int]], bool], timeout: float = 15.0
    ) -> dict[str, int]:
        """Wait until `predicate(status()["jobs"])` holds; returns those counts."""
        result: dict[str, int] = self.wait_until(
            lambda: (lambda jobs: jobs if predicate(jobs) else None)(self.status()["jobs"]),
            timeout,
            "job counts",
        )
        return result


def short_tmpdir(prefix: str = "wfd-") -> Path:
    """A fresh folder under /tmp (mode 0700) with a short path."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


@contextlib.contextmanager
def running_daemon(
    *,
    env: Mapping[str, str] | None = None,
    home: Path | None = None,
    extra_args: tuple[str, ...] = (),
    start: bool = True,
    keep: bool = False,
) -> Iterator[DaemonProcess]:
    """A daemon on a new temporary HOME (or `home`) and socket; stopped and cleaned up on exit."""
    root = short_tmpdir()
    daemon_home = home or root / "home"
    daemon_home.mkdir(parents=True, exist_ok=True)
    daemon = DaemonProcess(
        home=daemon_home, socket=root / "d.sock", env=dict(env or {}), extra_args=extra_args
    )
    try:
        if start:
            daemon.start()
        yield daemon
    finally:
        daemon.stop()
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
