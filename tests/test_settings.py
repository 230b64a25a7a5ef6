from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from wfbatch.providers.comfyui.settings import ComfyUISettings
from wfbatch.providers.fal.settings import FalSettings
from wfbatch.providers.local.settings import LocalSettings
from wfbatch.providers.openai.settings import OpenAISettings
from wfbatch.providers.replicate.settings import ReplicateSettings
from wfbatch.providers.stability.settings import StabilitySettings
from wfbatch.providers.wireflow.settings import WireflowSettings
from wfbatch.settings import (
    DeliverySettings,
    DraftsSettings,
    InboxSettings,
    NotifySettings,
    OutputSettings,
    Settings,
    StoreSettings,
    WebSettings,
    load_settings,
)

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "wfbatch.example.toml"


def test_precedence_defaults_file_env_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "h"
    home.mkdir()
    config = 'provider = "wireflow"\n[local]\nmax_in_flight = 3\nmax_attempts = 7\n'
    (home / "wfbatch.toml").write_text(config)
    settings = load_settings(home)
    assert settings.provider == "wireflow"
    assert settings.local.max_in_flight == 3
    monkeypatch.setenv("WFBATCH_LOCAL__MAX_IN_FLIGHT", "5")
    settings = load_settings(home)
    assert settings.local.max_in_flight == 5  # env beats the file
    assert settings.local.max_attempts == 7  # the file still fills what env leaves alone
    assert load_settings(home, provider="local").provider == "local"  # flags beat everything


def test_wireflow_plan_sets_limits_unless_given() -> None:
    assert WireflowSettings(plan="pro").requests_per_minute == 60
    assert WireflowSettings(plan="pro").daily_executions == 1000
    assert WireflowSettings(plan="enterprise").daily_executions is None
    assert WireflowSettings(plan="pro", requests_per_minute=5).requests_per_minute == 5


def test_secrets_are_masked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WFBATCH_WIREFLOW__API_KEY", "sk-secret-value")
    settings = load_settings(tmp_path)
    assert "sk-secret-value" not in repr(settings)
    assert "sk-secret-value" not in str(settings.masked())
    assert settings.wireflow.api_key is not None
    assert settings.wireflow.api_key.get_secret_value() == "sk-secret-value"


def test_the_example_config_is_valid_and_documents_every_setting() -> None:
    text = EXAMPLE.read_text()
    Settings(**tomllib.loads(text))
    sections = {
        "": Settings,
        "inbox": InboxSettings,
        "drafts": DraftsSettings,
        "local": LocalSettings,
        "wireflow": WireflowSettings,
        "openai": OpenAISettings,
        "fal": FalSettings,
        "replicate": ReplicateSettings,
        "stability": StabilitySettings,
        "comfyui": ComfyUISettings,
        "delivery": DeliverySettings,
        "notify": NotifySettings,
        "output": OutputSettings,
        "web": WebSettings,
        "store": StoreSettings,
    }
    for section, model in sections.items():
        for name in model.model_fields:
            if model is Settings and name in sections:
                continue
            assert re.search(rf"^#?\s*{name}\s*=", text, re.MULTILINE), f"{section}.{name} is not documented"
