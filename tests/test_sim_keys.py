"""One simulator port serving several keys (`wfbatch sim --accounts N`, `--api-key` given several
times): each key its own books and counters, a wrong key the provider's own 401, stats per key by
label and never the key. Real servers over loopback, real httpx; the CLI as a real subprocess."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest_sim import fast_options
from tests.test_sim_cli_fleet import exported, sim_process, stop
from wfbatch.sim import RunningSimulator

KEYS = ("sk-sim-key1", "sk-sim-key2", "sk-sim-key3")

# A start route of each provider and how its key is presented.
STARTS = {
    "wireflow": ("/api/v1/workflows/wf_demo/run", "Bearer", {"inputs": {"node-prompt": "a fox"}}),
    "openai": ("/v1/images/generations", "Bearer", {"model": "gpt-image-1", "prompt": "a fox"}),
    "fal": ("/fal-ai/flux/dev", "Key", {"prompt": "a fox"}),
    "replicate": ("/v1/predictions", "Bearer", {"version": "x", "input": {"prompt": "a fox"}}),
    "stability": ("/v2beta/stable-image/generate/core", "Bearer", None),
}


def _post(sim: RunningSimulator, provider: str, key: str) -> httpx.Response:
    path, scheme, body = STARTS[provider]
    headers = {"Authorization": f"{scheme} {key}"}
    if body is None:  # Stability's multipart form
        return httpx.post(sim.root_url + path, headers=headers, files={"prompt": (None, "a fox")}, timeout=10)
    return httpx.post(sim.root_url + path, headers=headers, json=body, timeout=10)


@pytest.mark.parametrize("provider", sorted(STARTS))
def test_each_key_reaches_its_own_books_and_a_wrong_key_gets_a_401(provider: str) -> None:
    with RunningSimulator(fast_options(provider=provider, api_keys=KEYS)) as sim:
        assert _post(sim, provider, "sk-sim-not-a-key-of-ours").status_code == 401
        for _ in range(2):
            assert _post(sim, provider, KEYS[1]).status_code != 401
        stats = httpx.get(sim.root_url + "/_sim/stats").json()
    assert stats["requests"] == {"total": 3, "wrong_key": 1}
    assert [account["account"] for account in stats["accounts"]] == ["key1", "key2", "key3"]
    assert [account["requests"]["total"] for account in stats["accounts"]] == [0, 2, 0]
    assert not any(key in str(stats) for key in KEYS)  # labels, never the keys


def test_wireflow_keys_have_their_own_windows_executions_and_images() -> None:
    options = fast_options(api_keys=KEYS, epm=2, window=600.0, latency=(0.0, 0.0))
    with RunningSimulator(options) as sim, httpx.Client(base_url=sim.base_url, timeout=10) as client:

        def run(key: str) -> httpx.Response:
            body = {"inputs": {"node-prompt": "a fox"}}
            headers = {"Authorization": f"Bearer {key}"}
            return client.post("/workflows/wf_demo/run", json=body, headers=headers)

        assert [run(KEYS[0]).status_code for _ in range(3)] == [202, 202, 429]  # key1's window is full
        started = run(KEYS[1])  # key2's is its own
        assert started.status_code == 202
        execution = started.json()["data"]["executionId"]
        mine = {"Authorization": f"Bearer {KEYS[1]}"}
        polled = client.get(f"/workflows/executions/{execution}/poll", headers=mine)
        assert polled.status_code == 200
        other = {"Authorization": f"Bearer {KEYS[2]}"}
        assert client.get(f"/workflows/executions/{execution}/poll", headers=other).status_code == 404
        assert polled.json()["status"] == "COMPLETED"
        image = client.get(polled.json()["finalOutput"]["url"], follow_redirects=True)  # no key: key2 has it
        assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
        stats = sim.stats()
    by_key = {account["account"]: account for account in stats["accounts"]}
    assert [by_key[k]["executions_created"] for k in ("key1", "key2", "key3")] == [2, 1, 0]
    assert by_key["key1"]["rate_limited"] == 1 and by_key["key2"]["rate_limited"] == 0


def test_credit_is_per_key_and_topped_up_per_key() -> None:
    with RunningSimulator(fast_options(api_keys=KEYS, credits=1.0)) as sim:
        raised = httpx.post(sim.root_url + "/_sim/topup", json={"amount": 4, "account": "key2"}).json()
        assert raised == {"balances": {"key2": 5.0}}
        refused = httpx.post(sim.root_url + "/_sim/topup", json={"amount": 4, "account": "key9"})
        assert refused.status_code == 400 and "key1, key2, key3" in refused.text
        balances = [account["credits"]["balance"] for account in sim.stats()["accounts"]]
    assert balances == [1.0, 5.0, 1.0]


def test_sim_accounts_prints_one_account_per_key_on_one_port() -> None:
    flags = ("--provider", "wireflow", "--plan", "pro", "--accounts", "3", "--window", "5")
    with sim_process(*flags) as (process, lines):
        title, export = lines
        assert "3 accounts" in title
        env = exported(export)
        # Pasted, the client paces itself by the simulator's plan and window.
        assert env["WFBATCH_WIREFLOW__PLAN"] == "pro" and env["WFBATCH_WIREFLOW__RATE_WINDOW_SECONDS"] == "5"
        urls = {env[f"WFBATCH_WIREFLOW__ACCOUNTS__{i}__BASE_URL"] for i in range(3)}
        assert len(urls) == 1  # one port
        names = [env[f"WFBATCH_WIREFLOW__ACCOUNTS__{i}__NAME"] for i in range(3)]
        assert names == ["key1", "key2", "key3"]
        key = env["WFBATCH_WIREFLOW__ACCOUNTS__1__API_KEY"]
        body = {"inputs": {"node-prompt": "a fox"}}
        started = httpx.post(
            f"{urls.pop()}/workflows/wf_demo/run", json=body, headers={"Authorization": f"Bearer {key}"}
        )
        assert started.status_code == 202
        stats = httpx.get(title.split(" at ")[1].split("/api/v1")[0] + "/_sim/stats").json()
        assert [a["executions_created"] for a in stats["accounts"]] == [0, 1, 0]
        out = stop(process)
    assert "1 executions" in out


def test_api_key_given_twice_serves_two_accounts_without_echoing_them() -> None:
    flags = ("--provider", "openai", "--api-key", "sk-mine-one", "--api-key", "sk-mine-two")
    with sim_process(*flags) as (process, (title, export)):
        assert "2 accounts" in title
        assert "sk-mine" not in export
        env = exported(export)
        assert env["WFBATCH_OPENAI__ACCOUNTS__1__API_KEY"] == "<your --api-key #2>"
        stop(process)
