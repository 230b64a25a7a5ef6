"""PostgreSQL for the tests: one server per test session, one fresh database per test.

The server is the one `.ci/run` started (its URL in WFBATCH_TEST_PG_URL), or else a private
cluster this session starts (tests/pg_cluster.py) and stops at its end; with pytest-xdist each
worker has its own session, and every test its own database (CREATE DATABASE, dropped after).

Without PostgreSQL on the machine the PostgreSQL tests skip, saying why; under CI
(WFBATCH_TEST_REQUIRE_PG=1, set by .ci/run) they fail instead: a missing server must not pass.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.pg_cluster import URL_VARIABLE, NoPostgres, start, stop

# Read at import: the autouse fixture that hides WFBATCH_* from each test runs later.
SHARED_URL = os.environ.get(URL_VARIABLE, "").strip() or None
REQUIRED = os.environ.get("WFBATCH_TEST_REQUIRE_PG", "") == "1"


def _unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"PostgreSQL is required here (WFBATCH_TEST_REQUIRE_PG=1) but {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL tests skipped: {reason}")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """The URL of a PostgreSQL server's maintenance database (`postgres`)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _unavailable("psycopg is not installed (pip install -e '.[dev]')")
    if SHARED_URL:
        yield SHARED_URL
        return
    try:
        url, folder = start()
    except NoPostgres as error:
        _unavailable(str(error))
        return
    try:
        yield url
    finally:
        stop(folder)


def database_url(server_url: str, name: str) -> str:
    """`server_url` with its database replaced by `name`."""
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture
def pg_database(pg_server: str) -> Iterator[str]:
    """A new, empty database for this test; its URL. Dropped afterwards."""
    import psycopg

    name = f"wfbatch_test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    try:
        yield database_url(pg_server, name)
    finally:
        with psycopg.connect(pg_server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


# -- what the run says about PostgreSQL -----------------------------------------------------------
# `make test` runs quietly (-q, dots only): a line at the end says how many tests ran against
# PostgreSQL, so a run where they all skipped (or never ran) is seen, not guessed.

_PG_OUTCOMES: dict[str, int] = {}


def _on_postgres(nodeid: str) -> bool:
    return "[postgres" in nodeid or "/test_pg_" in nodeid or nodeid.startswith("test_pg_")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if not _on_postgres(report.nodeid):
        return
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        _PG_OUTCOMES[report.outcome] = _PG_OUTCOMES.get(report.outcome, 0) + 1


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _PG_OUTCOMES:
        return
    counts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(_PG_OUTCOMES.items()))
    where = f"the server of {URL_VARIABLE}" if SHARED_URL else "a private cluster per test session"
    terminalreporter.write_line(f"PostgreSQL store backend ({where}): {counts}")
