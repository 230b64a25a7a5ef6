"""The provider registry: every provider is fully described (settings, label, traits), every
remote one can be rehearsed (`wfbatch sim --provider NAME`) and has its own fidelity test module,
and nothing outside the registry branches on a provider's name."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import json
import re
import sqlite3
import subprocess
import sys
import tokenize
from collections.abc import Iterator
from pathlib import Path

import pytest

from wfbatch.core.models import JobSpec
from wfbatch.providers.base import ProviderDefaults, UnlimitedGate
from wfbatch.providers.registry import (
    KNOWN_PROVIDERS,
    REGISTRY,
    ProviderTraits,
    UnknownProvider,
    build_provider,
    entry,
    provider_label,
)
from wfbatch.settings import Settings
from wfbatch.sim import SimOptions, SimState
from wfbatch.sim.registry import SIM_PROVIDERS
from wfbatch.store import Store
from wfbatch.store.rows import spec_to_json
from wfbatch.store.schema import MIGRATIONS

ROOT = Path(__file__).resolve().parents[1]
KEYS = {"api_key": "sk-registry-test", "workflow_id": "wf_demo"}


def configured(name: str) -> Settings:
    section = {k: v for k, v in KEYS.items() if k in REGISTRY[name].settings_class.model_fields}
    return Settings(**{name: section})


@pytest.mark.parametrize("name", KNOWN_PROVIDERS)
def test_every_provider_is_fully_described(name: str) -> None:
    described = entry(name)
    settings = Settings()
    assert isinstance(settings.provider_limits(name), described.settings_class)
    assert provider_label(name, settings).startswith(name)
    assert isinstance(described.traits, ProviderTraits)
    assert described.traits.cost_unit in ("credits", "USD", "free")
    if described.traits.remote:
        assert name in SIM_PROVIDERS, f"`wfbatch sim --provider {name}` does not serve {name}"
        assert (ROOT / "tests" / f"test_{name}.py").is_file(), f"no fidelity test module for {name}"


@pytest.mark.parametrize("name", KNOWN_PROVIDERS)
async def test_every_provider_builds_with_the_whole_protocol(name: str) -> None:
    provider = build_provider(name, configured(name), UnlimitedGate())
    try:
        assert provider.name == name
        # Optional members come from one base with honest defaults, never probed with hasattr.
        assert isinstance(provider, ProviderDefaults)
        if not entry(name).traits.remote_cancel:
            assert await provider.cancel({"execution_id": "x"}) is False
        if not entry(name).traits.reports_balance:
            assert await provider.balance() is None
        # Built by name, so no type checker sees the class against the protocol: check what the
        # engine calls with keywords (a poll's priority reaches the provider's gate).
        assert "priority" in inspect.signature(provider.poll).parameters
        reconcile = inspect.signature(provider.reconcile).parameters
        assert list(reconcile) == ["spec", "idempotency_key", "started_at"]
    finally:
        await provider.aclose()


def test_unknown_provider() -> None:
    with pytest.raises(UnknownProvider, match="known: local"):
        entry("nope")


def test_no_name_comparisons_outside_the_registry() -> None:
    names = "|".join(KNOWN_PROVIDERS)
    pattern = re.compile(rf"""(==|!=|\bin\b|\bis\b)\s*["']({names})["']|["']({names})["']\s*(==|!=)""")
    offenders = []
    for folder in ("engine", "daemon", "cli", "outputs", "store"):
        for path in (ROOT / "wfbatch" / folder).rglob("*.py"):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line) or re.search(rf"""\{{\s*["']({names})["']\s*:""", line):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


ORDINARY_WORDS = frozenset({"local"})
"""Provider names that are also plain English ("a local address"): only a whole token counts —
the identifier `local`, the string "local", a module path such as "wfbatch.providers.local:X"."""


def _mentions(token: str, name: str) -> bool:
    """Whether a name or string token names the provider: `OpenAISettings`, `fal_routes`,
    "wireflow (workflow …)" do; `FALLBACK` and `false` do not."""
    if name in ORDINARY_WORDS:
        text = token.strip("\"'")
        return text == name or re.search(rf"(^|[.:]){name}($|[.:])", text) is not None
    start = token.lower().find(name)
    while start >= 0:
        end = start + len(name)
        found = token[start:end]
        before = token[start - 1] if start else ""
        left = not before.isalnum() or (before.islower() and found[0].isupper())
        after = token[end] if end < len(token) else ""
        # `OpenAISettings`: a capital starts the next word; `FALLBACK`: all capitals, one word.
        right = not after.isalnum() or (after.isupper() and not found.isupper())
        if left and right:
            return True
        start = token.lower().find(name, start + 1)
    return False


def _code_tokens(path: Path) -> Iterator[tokenize.TokenInfo]:
    """Names and strings of a module, without comments and docstrings (those may name anything)."""
    source = path.read_text()
    docstrings = {
        (node.lineno, node.col_offset)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    }
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.NAME or (token.type == tokenize.STRING and token.start not in docstrings):
            yield token


def _named_outside_its_packages(name: str, paths: list[Path]) -> list[str]:
    own = (ROOT / "wfbatch" / "providers" / name, ROOT / "wfbatch" / "sim" / name)
    registries = (ROOT / "wfbatch" / "providers" / "registry.py", ROOT / "wfbatch" / "sim" / "registry.py")
    return [
        f"{path.relative_to(ROOT)}:{token.start[0]}: {token.string[:60]}"
        for path in paths
        if path not in registries and not any(folder in path.parents for folder in own)
        for token in _code_tokens(path)
        if _mentions(token.string, name)
    ]


def test_the_name_check_sees_what_it_must() -> None:
    assert _mentions("OpenAISettings", "openai") and _mentions("fal_routes", "fal")
    assert _mentions('"wireflow (workflow ?)"', "wireflow") and _mentions("WIREFLOW_PLAN", "wireflow")
    assert _mentions("ComfyUISettings", "comfyui") and _mentions('"stability"', "stability")
    assert not _mentions("FALLBACK_SLUG", "fal") and not _mentions("false", "fal")
    assert _mentions('"local"', "local") and _mentions('"wfbatch.providers.local.provider:X"', "local")
    assert not _mentions('"a local address"', "local") and not _mentions("local_address", "local")


@pytest.mark.parametrize("name", KNOWN_PROVIDERS)
def test_a_provider_is_named_only_in_its_packages_and_the_registries(name: str) -> None:
    """Everything about a provider is in providers/<name>/ (and sim/<name>/); the registries are the
    only other places that name it (comments and docstrings aside). The simulator: see below."""
    sim = ROOT / "wfbatch" / "sim"
    paths = [path for path in sorted((ROOT / "wfbatch").rglob("*.py")) if sim not in path.parents]
    found = _named_outside_its_packages(name, paths)
    assert not found, "\n".join(found)


@pytest.mark.parametrize("name", [name for name, entry in REGISTRY.items() if entry.traits.remote])
def test_a_simulated_provider_is_named_only_in_its_sim_package_and_the_sim_registry(name: str) -> None:
    found = _named_outside_its_packages(name, sorted((ROOT / "wfbatch" / "sim").rglob("*.py")))
    assert not found, "\n".join(found)


@pytest.mark.parametrize("name", list(SIM_PROVIDERS))
def test_a_simulator_package_brings_its_options_and_books(name: str) -> None:
    """Its `wfbatch sim` options set its own options' fields (or shared ones), and the shared state
    reaches its books only through the `SimBook` protocol."""
    sim = SIM_PROVIDERS[name]
    shared = {f.name for f in dataclasses.fields(SimOptions)}
    own = {f.name for f in dataclasses.fields(sim.options)}
    assert not own & shared, f"{name}'s own options shadow shared ones"
    assert {option.name for option in sim.cli_options} <= own | shared
    state = SimState(SimOptions(provider=name), clock=lambda: 0.0)
    assert isinstance(state.options.own, sim.options)
    assert state.stats()["provider"] == name and "rate_limited" in state.stats()


async def test_migration_gives_running_executions_their_poll_handle(tmp_path: Path) -> None:
    db = tmp_path / "wfbatch.db"
    conn = sqlite3.connect(db)
    for script in MIGRATIONS[:3]:
        conn.executescript(script)
    conn.execute("PRAGMA user_version=3")
    conn.execute(
        "INSERT INTO batches VALUES ('b1', 'n', 'n.txt', 'h', 'wireflow', 1, NULL, '/tmp/out', 0, 0)"
    )
    spec = spec_to_json(JobSpec("wireflow", "p", None, None, 64, 64, 1, 0))
    for uid, remote in (("u1", "exec_1"), ("u2", None)):
        conn.execute(
            "INSERT INTO jobs (uid, batch_id, idx, line, provider, spec, prompt, cache_key, state,"
            " remote_id, created_at, updated_at) VALUES (?, 'b1', 1, 1, 'wireflow', ?, 'p', 'k', ?, ?, 0, 0)",
            (uid, spec, "running" if remote else "queued", remote),
        )
    conn.commit()
    conn.close()
    store = await Store.open(db)
    try:
        jobs = {job.uid: job for job in await store.jobs.list_jobs()}
    finally:
        await store.close()
    assert jobs["u1"].handle == {"execution_id": "exec_1"}
    assert jobs["u2"].handle is None


def test_the_configuration_loads_provider_sections_only() -> None:
    """`wfbatch.settings` composes every provider's section through the registry: that must stay as
    light as a settings module (no HTTP layer, no client, no httpx), for a quick CLI start."""
    code = "import json, sys, wfbatch.settings; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert "wfbatch.providers.registry" in loaded
    assert [m for m in loaded if m == "httpx" or m.startswith(("httpx.", "wfbatch.providers.http"))] == []
    assert [m for m in loaded if m.startswith("wfbatch.providers.") and m.endswith(".client")] == []
