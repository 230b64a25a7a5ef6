"""Import hygiene both ways: the TUI attaches over the API only (it never loads the daemon, engine or
store), and the daemon, engine and store never load the TUI or `textual`."""

from __future__ import annotations

import json
import subprocess
import sys

FORBIDDEN = ("wfbatch.daemon", "wfbatch.store", "wfbatch.engine", "wfbatch.providers", "wfbatch.outputs")


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


def test_the_daemon_engine_and_store_never_import_textual() -> None:
    """The other direction: a headless daemon must not pay for (or depend on) the TUI's toolkit."""
    code = (
        "import json, sys\n"
        "import wfbatch.daemon.runner, wfbatch.engine.scheduler, wfbatch.store, wfbatch.cli.daemon_cmd\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {'textual', 'wfbatch'})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert "wfbatch.daemon.runner" in loaded
    assert [m for m in loaded if m == "textual" or m.startswith(("textual.", "wfbatch.tui"))] == []
