"""A private PostgreSQL cluster for the tests: a temp folder, a Unix socket only, stopped at the end.

    python -m tests.pg_cluster start   # prints `<url> <folder>`; .ci/run exports the URL
    python -m tests.pg_cluster stop FOLDER

Debian's PostgreSQL 15 lives in /usr/lib/postgresql/15/bin. `initdb` refuses to run as root, so as
root every server command runs as the `postgres` user (`runuser`), in a folder it may write. The
server listens on no TCP port (`listen_addresses=''`): nothing outside this machine can reach it,
and several clusters (one per CI run, one per developer) never collide on a port.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BIN_CANDIDATES = (Path("/usr/lib/postgresql/15/bin"), Path("/usr/lib/postgresql/16/bin"))
URL_VARIABLE = "WFBATCH_TEST_PG_URL"
"""Set by .ci/run (and by a developer who runs a server): the tests reuse that cluster."""


class NoPostgres(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


def server_bin() -> Path:
    for folder in BIN_CANDIDATES:
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    raise NoPostgres(
        "no PostgreSQL server found (looked in " + ", ".join(map(str, BIN_CANDIDATES)) + " and on PATH)"
    )


def _as_server_user(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", "postgres", "--", *argv]


def start() -> tuple[str, Path]:
    """Start a fresh cluster; its URL (a libpq URI naming the socket folder) and its folder."""
    binaries = server_bin()
    folder = Path(tempfile.mkdtemp(prefix="wfbatch-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    folder.chmod(0o700)
    data, log = folder / "data", folder / "server.log"
    subprocess.run(
        _as_server_user([str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                         "--no-sync", "-E", "UTF8", "--locale=C"]),
        check=True, capture_output=True,
    )
    # fsync off: a test cluster is thrown away, and CREATE DATABASE per test is then cheap.
    options = (
        f"-c listen_addresses='' -k {folder} -c fsync=off -c full_page_writes=off -c max_connections=200"
    )
    pg_ctl = str(binaries / "pg_ctl")
    subprocess.run(
        _as_server_user([pg_ctl, "-D", str(data), "-l", str(log), "-o", options, "-w", "start"]),
        check=True,
        capture_output=True,
    )
    return f"postgresql://postgres@/postgres?host={folder}", folder


def stop(folder: Path) -> None:
    binaries = server_bin()
    subprocess.run(
        _as_server_user([str(binaries / "pg_ctl"), "-D", str(folder / "data"), "-m", "fast", "-w", "stop"]),
        check=False, capture_output=True,
    )
    shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str]) -> int:
    if argv[:1] == ["start"]:
        try:
            url, folder = start()
        except NoPostgres as error:
            print(f"PostgreSQL missing: {error}", file=sys.stderr)
            return 1
        except subprocess.CalledProcessError as error:
            output = error.stderr.decode(errors="replace")
            print(f"PostgreSQL would not start: {error}\n{output}", file=sys.stderr)
            return 1
        print(url, folder)
        return 0
    if argv[:1] == ["stop"] and len(argv) == 2:
        stop(Path(argv[1]))
        return 0
    print("usage: python -m tests.pg_cluster start | stop FOLDER", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
