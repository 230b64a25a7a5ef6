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
