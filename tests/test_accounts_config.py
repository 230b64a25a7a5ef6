"""Several accounts per provider in the configuration: the file, the environment, the one-key form
of today, and keys that are never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from wfbatch.engine.planning.plan import pooled_limits, schedule_model
from wfbatch.providers.registry import configuration_problems
from wfbatch.settings import SettingsError, load_settings

TWO_ACCOUNTS = """
[wireflow]
workflow_id = "wf_1"
[[wireflow.accounts]]
name = "studio"
api_key = "sk-studio-secret"
executions_per_minute = 5
weight = 2.0
[[wireflow.accounts]]
name = "client"
api_key = "sk-client-secret"
base_url = "http://127.0.0.1:9000"
pool = "shared"
"""


def home_with(tmp_path: Path, text: str) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    (home / "wfbatch.toml").write_text(text)
    return home


def test_accounts_in_the_file_take_their_own_key_endpoint_and_limits(tmp_path: Path) -> None:
    settings = load_settings(home_with(tmp_path, TWO_ACCOUNTS))
    studio, client = settings.wireflow.account_list()
    assert (studio.name, studio.pool, studio.weight) == ("studio", "studio", 2.0)
    assert (client.name, client.pool, client.weight) == ("client", "shared", 1.0)
    keys = [account.section.api_key for account in (studio, client)]
    assert [k.get_secret_value() if k else None for k in keys] == ["sk-studio-secret", "sk-client-secret"]
    assert studio.section.executions_per_minute == 5
    assert client.section.executions_per_minute == 10  # the section's (the plan's)
    assert client.section.base_url == "http://127.0.0.1:9000"
    assert studio.section.base_url == settings.wireflow.base_url
    assert configuration_problems("wireflow", settings) == []


def test_one_api_key_is_one_account_named_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WFBATCH_WIREFLOW__API_KEY", "sk-only")
    settings = load_settings(tmp_path)
    (only,) = settings.wireflow.account_list()
    assert (only.name, only.pool) == ("default", "default")
    assert only.section is settings.wireflow
    (local,) = settings.local.account_list()
    assert local.name == "default"


def test_accounts_from_the_environment_by_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WFBATCH_OPENAI__ACCOUNTS__1__NAME", "second")
    monkeypatch.setenv("WFBATCH_OPENAI__ACCOUNTS__1__API_KEY", "sk-two")
    monkeypatch.setenv("WFBATCH_OPENAI__ACCOUNTS__0__NAME", "first")
    monkeypatch.setenv("WFBATCH_OPENAI__ACCOUNTS__0__API_KEY", "sk-one")
    monkeypatch.setenv("WFBATCH_OPENAI__ACCOUNTS__0__MAX_IN_FLIGHT", "7")
    settings = load_settings(tmp_path)
    first, second = settings.openai.account_list()
    assert (first.name, second.name) == ("first", "second")
    assert first.section.max_in_flight == 7 and second.section.max_in_flight == 2
    assert second.section.api_key is not None and second.section.api_key.get_secret_value() == "sk-two"


def test_account_keys_are_never_shown(tmp_path: Path) -> None:
    settings = load_settings(home_with(tmp_path, TWO_ACCOUNTS))
    for shown in (repr(settings), str(settings.masked()), repr(settings.wireflow.account_list())):
        assert "sk-studio-secret" not in shown and "sk-client-secret" not in shown


def test_each_account_needs_its_own_key(tmp_path: Path) -> None:
    text = TWO_ACCOUNTS.replace('api_key = "sk-client-secret"\n', "")
    settings = load_settings(home_with(tmp_path, text))
    problems = configuration_problems("wireflow", settings)
    assert len(problems) == 1 and problems[0].startswith("account 'client': Wireflow needs an API key")


def test_a_section_key_beside_accounts_is_a_problem_not_a_silent_extra_account(tmp_path: Path) -> None:
    text = TWO_ACCOUNTS.replace('workflow_id = "wf_1"', 'workflow_id = "wf_1"\napi_key = "sk-x"')
    problems = configuration_problems("wireflow", load_settings(home_with(tmp_path, text)))
    assert problems == ["api_key is set beside accounts: give each account its own api_key instead"]


def test_account_names_must_differ(tmp_path: Path) -> None:
    text = TWO_ACCOUNTS.replace('name = "client"', 'name = "studio"')
    with pytest.raises(SettingsError, match="studio given more than once"):
        load_settings(home_with(tmp_path, text))


def test_a_daily_credit_cap_on_an_account_is_its_own_not_the_sections(tmp_path: Path) -> None:
    text = TWO_ACCOUNTS.replace("weight = 2.0", "weight = 2.0\ndaily_credit_cap = 5")
    settings = load_settings(home_with(tmp_path, text))
    assert configuration_problems("wireflow", settings) == []
    limits = settings.provider_limits("wireflow")
    assert (limits.account_credit_cap("studio"), limits.account_credit_cap("client")) == (5, None)
    assert limits.daily_credit_cap is None  # the section's own cap is untouched


def test_plan_forecasts_with_the_sum_of_the_pools_limits(tmp_path: Path) -> None:
    text = TWO_ACCOUNTS + '[[wireflow.accounts]]\nname = "org-2"\napi_key = "sk-org-2"\npool = "shared"\n'
    settings = load_settings(home_with(tmp_path, text))
    pooled = pooled_limits(settings, "wireflow")
    # Pools: studio (5 starts/min) and shared (client and org-2: the section's 10, counted once).
    assert pooled.executions_per_minute == 15
    assert pooled.max_in_flight == 2 * settings.wireflow.max_in_flight
    assert pooled.daily_executions == 2 * (settings.wireflow.daily_executions or 0)
    model = schedule_model(settings, "wireflow", latency=1.0)
    assert model.executions_per_minute == 15
    single = load_settings(tmp_path / "elsewhere")
    assert schedule_model(single, "wireflow", latency=1.0).executions_per_minute == 10


def test_a_wireflow_key_with_several_workflows_is_one_account_per_workflow(tmp_path: Path) -> None:
    text = TWO_ACCOUNTS.replace('name = "studio"', 'name = "studio"\nworkflow_ids = ["wf_a", "wf_b"]')
    settings = load_settings(home_with(tmp_path, text))
    assert configuration_problems("wireflow", settings) == []
    accounts = settings.provider_limits("wireflow").account_list()
    studio = [a for a in accounts if a.key_account == "studio"]
    assert [(a.name, a.pool, a.section.workflow_id) for a in studio] == [  # type: ignore[attr-defined]
        ("studio/wf_a", "studio/wf_a", "wf_a"),
        ("studio/wf_b", "studio/wf_b", "wf_b"),
    ]
    assert settings.provider_limits("wireflow").key_accounts("studio/wf_b") == ["studio/wf_a", "studio/wf_b"]


def test_workflow_ids_on_an_account_of_a_provider_without_workflows_is_refused(tmp_path: Path) -> None:
    text = '[openai]\n[[openai.accounts]]\nname = "a"\napi_key = "sk-a"\nworkflow_ids = ["wf_a"]\n'
    problems = configuration_problems("openai", load_settings(home_with(tmp_path, text)))
    assert any("workflow_ids is for a provider with workflows" in problem for problem in problems)


def test_plan_counts_a_keys_workflows_starts_each_and_its_requests_once(tmp_path: Path) -> None:
    text = (
        '[wireflow]\nworkflow_id = "wf_1"\nrequests_per_minute = 60\nexecutions_per_minute = 10\n'
        '[[wireflow.accounts]]\nname = "studio"\napi_key = "sk-studio"\nworkflow_ids = ["wf_a", "wf_b"]\n'
        '[[wireflow.accounts]]\nname = "client"\napi_key = "sk-client"\n'
    )
    pooled = pooled_limits(load_settings(home_with(tmp_path, text)), "wireflow")
    assert pooled.executions_per_minute == 30  # studio's two workflows and client: 10 each
    assert pooled.requests_per_minute == 120  # two keys: 60 each, whatever their workflows
