"""Import hygiene both ways: the TUI attaches over the API only (it never loads the daemon, engine or
store), and the daemon, engine and store never load the TUI or `textual`."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from wfbatch.providers.registry import KNOWN_PROVIDERS

FORBIDDEN = ("wfbatch.daemon", "wfbatch.store", "wfbatch.engine", "wfbatch.outputs")
# The configuration (read for the socket's path) holds every provider's settings section, so the
# registry and those sections load; a provider's client, requests or prices never do.
PROVIDER_PACKAGE_PART = re.compile(r"^wfbatch\.providers\.(?P<name>\w+)\.(?P<module>\w+)")


def test_tui_modules_import_neither_daemon_nor_store_nor_engine() -> None:
    code = (
        "import json, sys\n"
        "import wfbatch.tui, wfbatch.tui.app, wfbatch.cli.tui_cmd\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('wfbatch'))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert "wfbatch.tui.app" in loaded
    leaked = [m for m in loaded if m.startswith(FORBIDDEN)]
    assert leaked == []
    parts = [part for m in loaded if (part := PROVIDER_PACKAGE_PART.match(m))]
    providers = [part[0] for part in parts if part["name"] in KNOWN_PROVIDERS]
    assert providers, "the configuration's provider sections are expected here"
    assert [m for m in providers if not m.endswith(".settings")] == []


def test_the_daemon_engine_and_store_never_import_textual() -> None:
    """The other direction: a headless daemon must not pay for (or depend on) the TUI's toolkit."""
    code = (
        "import json, sys\n"
        "import wfbatch.daemon.runner, wfbatch.engine.loop.scheduler, wfbatch.store, wfbatch.cli.daemon_cmd\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {'textual', 'wfbatch'})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert "wfbatch.daemon.runner" in loaded
    assert [m for m in loaded if m == "textual" or m.startswith(("textual.", "wfbatch.tui"))] == []
