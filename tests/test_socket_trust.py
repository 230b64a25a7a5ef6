"""Socket trust: the daemon only listens in a folder no one else can write to, and the client only
talks to a listener run by its own user (checked with SO_PEERCRED on every connection).

Another user is simulated with uid 65534 (nobody); the tests run as root, for whom "another
user" is any uid but 0, so they also show that root's own checks hold.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_harness import DaemonProcess, clean_env, running_daemon, short_tmpdir
from wfbatch.client import DaemonClient, DaemonUnavailable, UntrustedDaemon
from wfbatch.protocol import SubmitRequest

OTHER_UID = 65534

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="simulating another user needs root")

# A listener run as another user: it writes whatever it receives to stdout.
SQUATTER = textwrap.dedent(
    """
    import os, socket, sys
    os.setgid({uid}); os.setuid({uid})
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(sys.argv[1]); server.listen(8)
    print("listening", flush=True)
    while True:
        conn, _ = server.accept()
        conn.settimeout(2)
        try:
            data = conn.recv(65536)
        except OSError:
            data = b""
        sys.stdout.write("got:" + data.decode(errors="replace").replace(chr(10), " ") + chr(10))
        sys.stdout.flush()
        conn.sendall(b"HTTP/1.1 200 OK\\r\\ncontent-length: 2\\r\\n\\r\\n{{}}")
        conn.close()
    """
).format(uid=OTHER_UID)


def _daemon_exit(socket_path: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    home = short_tmpdir("wft-")
    args = ["--socket", str(socket_path)] if env is None else []
    return subprocess.run(
        [sys.executable, "-m", "wfbatch", "daemon", "--home", str(home), *args],
        env=clean_env(env), capture_output=True, text=True, timeout=30, check=False,
    )


def _assert_one_line_refusal(out: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert out.returncode == 2, out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr, out.stderr
    for needle in needles:
        assert needle in out.stderr, out.stderr


def test_the_daemon_refuses_a_socket_folder_of_another_user() -> None:
    folder = short_tmpdir("wft-")
    os.chown(folder, OTHER_UID, OTHER_UID)
    _assert_one_line_refusal(_daemon_exit(folder / "d.sock"), "belongs to uid 65534", "not to you")
    assert not (folder / "d.sock").exists()


@pytest.mark.parametrize("mode", [0o770, 0o707, 0o1777])
def test_the_daemon_refuses_a_socket_folder_others_can_write(mode: int) -> None:
    folder = short_tmpdir("wft-")
    folder.chmod(mode)
    _assert_one_line_refusal(_daemon_exit(folder / "d.sock"), "writable by group or others")


def test_a_squatted_runtime_folder_is_a_clear_error() -> None:
    runtime = short_tmpdir("wft-")
    (runtime / "wfbatch").mkdir()
    os.chown(runtime / "wfbatch", OTHER_UID, OTHER_UID)
    out = _daemon_exit(runtime, env={"XDG_RUNTIME_DIR": str(runtime)})
    _assert_one_line_refusal(out, "belongs to uid 65534")
    assert (runtime / "wfbatch").stat().st_uid == OTHER_UID  # root did not take it over by chmod


def test_a_runtime_folder_that_is_a_file_is_a_clear_error() -> None:
    runtime = short_tmpdir("wft-")
    (runtime / "wfbatch").write_text("not a folder")
    _assert_one_line_refusal(_daemon_exit(runtime, env={"XDG_RUNTIME_DIR": str(runtime)}), "not a folder")


@pytest.fixture
def squatter() -> Iterator[tuple[subprocess.Popen[str], Path]]:
    folder = short_tmpdir("wft-")
    os.chown(folder, OTHER_UID, OTHER_UID)
    path = folder / "d.sock"
    process = subprocess.Popen(
        [sys.executable, "-c", SQUATTER, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "listening"
    yield process, path
    process.kill()
    process.wait(5)
    process.stdout.close()


def test_the_client_refuses_a_listener_of_another_user_and_sends_it_nothing(
    squatter: tuple[subprocess.Popen[str], Path],
) -> None:
    process, path = squatter

    async def submit() -> None:
        async with DaemonClient(path) as client:
            await client.submit(SubmitRequest(name="secret.txt", content="my secret prompt\n"))

    with pytest.raises(UntrustedDaemon, match=r"belongs to uid 65534 .*not to you \(uid 0"):
        asyncio.run(submit())
    process.kill()
    assert process.stdout is not None
    received = process.stdout.read()
    assert "secret" not in received and "POST" not in received, received


def test_the_cli_refuses_a_listener_of_another_user_in_one_line(
    squatter: tuple[subprocess.Popen[str], Path], tmp_path: Path
) -> None:
    _, path = squatter
    prompts = tmp_path / "p.txt"
    prompts.write_text("my secret prompt\n")
    out = subprocess.run(
        [sys.executable, "-m", "wfbatch", "submit", str(prompts), "--socket", str(path)],
        env=clean_env({"WFBATCH_HOME": str(tmp_path)}),
        capture_output=True, text=True, timeout=30, check=False,
    )
    _assert_one_line_refusal(out, "belongs to uid 65534")


def test_the_client_still_talks_to_its_own_daemon() -> None:
    with running_daemon() as daemon:

        async def health() -> int:
            async with daemon.client() as client:
                return (await client.health()).pid

        assert asyncio.run(health()) == daemon.pid


@pytest.mark.parametrize("kind", ["file", "folder", "under-a-file", "too-long"])
def test_the_cli_against_something_that_is_not_a_socket(kind: str) -> None:
    root = short_tmpdir("wft-")
    path = root / "d.sock"
    if kind == "file":
        path.write_text("")
    elif kind == "folder":
        path.mkdir()
    elif kind == "too-long":
        path = root / ("x" * 120)
    else:
        (root / "f").write_text("")
        path = root / "f" / "d.sock"
    out = subprocess.run(
        [sys.executable, "-m", "wfbatch", "status", "--socket", str(path)],
        env=clean_env({"WFBATCH_HOME": str(root)}), capture_output=True, text=True, timeout=30, check=False,
    )
    if kind == "folder":  # click itself refuses it, as a usage error
        assert out.returncode == 2 and "is a directory" in out.stderr and "Traceback" not in out.stderr
        return
    _assert_one_line_refusal(out, "no wfbatch daemon answers")
    hints = ("(it is not a socket)", "is not a folder)", "a Unix socket path has at most 107")
    assert any(hint in out.stderr for hint in hints), out.stderr


def test_a_symlinked_socket_path_is_refused_by_the_daemon(tmp_path: Path) -> None:
    folder = short_tmpdir("wft-")
    target = short_tmpdir("wft-") / "elsewhere.sock"
    (folder / "d.sock").symlink_to(target)
    _assert_one_line_refusal(_daemon_exit(folder / "d.sock"), "is not a socket")
    assert not target.exists()


def test_the_daemon_harness_still_runs(tmp_path: Path) -> None:
    # The harness puts the socket in a fresh 0700 folder of the test's user: still accepted.
    daemon = DaemonProcess(home=tmp_path / "h", socket=short_tmpdir("wft-") / "d.sock")
    daemon.home.mkdir()
    daemon.start()
    try:
        assert daemon.answers()
    finally:
        daemon.stop()


def test_no_daemon_is_still_unavailable() -> None:
    async def health() -> None:
        async with DaemonClient(short_tmpdir("wft-") / "none.sock") as client:
            await client.health()

    with pytest.raises(DaemonUnavailable):
        asyncio.run(health())
