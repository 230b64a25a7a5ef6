"""Shared fixtures: a temporary HOME, settings built from it, and a real SQLite store in it."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.deadlines import SLOWDOWN, SLOWDOWN_VARIABLE
from wfbatch.home import HomeLayout
from wfbatch.settings import Settings, load_settings
from wfbatch.store import Store, StoreApi, open_store

pytest_plugins = ["tests.pg_fixtures"]


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No test sees the developer's WFBATCH_* variables or writes to their data folder."""
    import os

    for name in list(os.environ):
        if name.startswith("WFBATCH_") and name != SLOWDOWN_VARIABLE:
            monkeypatch.delenv(name)
    monkeypatch.setenv("WFBATCH_HOME", str(tmp_path / "default-home"))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    yield


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On a machine slowed down by WFBATCH_TEST_SLOWDOWN, pytest-timeout's per-test bound stretches
    with every other deadline (a test's own `timeout` mark is stretched too)."""
    if SLOWDOWN == 1.0:
        return
    configured = config.getvalue("timeout") or config.getini("timeout")
    for item in items:
        mark = item.get_closest_marker("timeout")
        seconds = mark.args[0] if mark is not None and mark.args else configured
        if seconds:
            item.add_marker(pytest.mark.timeout(float(seconds) * SLOWDOWN), append=False)


@pytest.fixture(autouse=True)
def _collect_garbage_after_each_test() -> Iterator[None]:
    """An unclosed socket or connection warns when it is collected: collect now, so the warning
    (an error under filterwarnings=error) fails the test that leaked it, not a later bystander."""
    yield
    gc.collect()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def layout(home: Path) -> HomeLayout:
    layout = HomeLayout(home)
    layout.ensure()
    return layout


@pytest.fixture
def make_settings(home: Path) -> Any:
    def make(**overrides: Any) -> Settings:
        return load_settings(home, **overrides)

    return make


@pytest.fixture
async def store(layout: HomeLayout) -> AsyncIterator[Store]:
    opened = await Store.open(layout.db)
    try:
        yield opened
    finally:
        await opened.close()


STORE_BACKENDS = ("sqlite", "postgres")
"""Every backend of `StoreApi`: the contract tests (tests/test_store_contract.py) and the money
paths (tests/test_money_paths.py) run against each; pytest shows them as `[sqlite]`/`[postgres]`."""


async def open_backend(name: str, layout: HomeLayout, request: pytest.FixtureRequest) -> StoreApi:
    if name == "sqlite":
        return await Store.open(layout.db)
    if name == "postgres":
        url = request.getfixturevalue("pg_database")
        return await open_store(url, layout.db)
    raise ValueError(f"no store backend {name!r}")


@pytest.fixture(params=STORE_BACKENDS)
async def any_store(request: pytest.FixtureRequest, layout: HomeLayout) -> AsyncIterator[StoreApi]:
    """A fresh store of each backend in turn, seen only through its interface."""
    opened = await open_backend(request.param, layout, request)
    try:
        yield opened
    finally:
        await opened.close()
