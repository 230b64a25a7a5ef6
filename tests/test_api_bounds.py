"""Numbers from clients are checked: budgets, ids, cursors and bodies, against a real daemon.

Every answer here must be a 4xx Problem, never a 500 and never a stored NaN ("no cap").
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from tests.daemon_harness import DaemonProcess, jsonl, running_daemon

BIG = 2**70  # past SQLite's signed 64-bit integers
SERVER_ERROR = 500


@pytest.fixture(scope="module")
def daemon() -> Iterator[DaemonProcess]:
    with running_daemon(env={"WFBATCH_INBOX__STABLE_SECONDS": "0.3"}) as running:
        yield running


@pytest.fixture(scope="module")
def batch_id(daemon: DaemonProcess) -> str:
    response = daemon.post("/v1/submit", {"name": "b.jsonl", "content": jsonl("a fox"), "budget": 5})
    assert response.status_code == 201, response.text
    return str(response.json()["batch_id"])


def _raw_post(daemon: DaemonProcess, path: str, body: bytes) -> Any:
    with daemon.http() as http:
        return http.post(path, content=body, headers={"content-type": "application/json"})


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "-3", "1e400"])
def test_a_budget_that_is_not_a_finite_non_negative_number_is_refused(
    daemon: DaemonProcess, batch_id: str, literal: str
) -> None:
    set_budget = _raw_post(daemon, f"/v1/batches/{batch_id}/budget", f'{{"budget": {literal}}}'.encode())
    assert set_budget.status_code == 422, set_budget.text
    assert set_budget.json()["detail"][0]["loc"] == "budget"

    content = json.dumps(jsonl(f"refused {literal}"))
    submit = _raw_post(
        daemon, "/v1/submit", f'{{"name": "n.jsonl", "content": {content}, "budget": {literal}}}'.encode()
    )
    assert submit.status_code == 422, submit.text
    assert daemon.get(f"/v1/batches/{batch_id}")["budget"] == 5
    assert not daemon.get("/v1/jobs", q=f"refused {literal}")["items"]


def test_nan_anywhere_in_a_body_is_refused(daemon: DaemonProcess) -> None:
    response = _raw_post(daemon, "/v1/jobs/retry", b'{"job_ids": [NaN]}')
    assert response.status_code == 422, response.text


@pytest.mark.parametrize(
    ("path", "status"),
    [
        (f"/v1/jobs/{BIG}", 404),
        ("/v1/jobs/99999999999999999999", 404),
        ("/v1/jobs/0", 404),
        ("/v1/jobs/-1", 404),
        ("/v1/jobs/x", 400),
    ],
)
def test_a_job_id_no_job_can_have_is_not_found(daemon: DaemonProcess, path: str, status: int) -> None:
    with daemon.http() as http:
        assert http.get(path).status_code == status
        edited = http.post(f"{path}/edit", json={"prompt": "x"})
        assert edited.status_code == status, edited.text


@pytest.mark.parametrize("cursor", [str(BIG), "-1", "1e3", pytest.param("9" * 5000, id="5000-digits")])
def test_a_cursor_out_of_range_is_a_422(daemon: DaemonProcess, cursor: str) -> None:
    with daemon.http() as http:
        response = http.get("/v1/jobs", params={"cursor": cursor})
    assert response.status_code == 422, response.text
    assert "cursor" in response.json()["error"]


def test_a_large_limit_is_capped_and_a_bad_one_refused(daemon: DaemonProcess) -> None:
    with daemon.http() as http:
        assert http.get("/v1/jobs", params={"limit": "100000"}).status_code == 200
        assert http.get("/v1/batches", params={"limit": "100000"}).status_code == 200
        assert http.get("/v1/jobs", params={"limit": str(BIG)}).status_code == 422
        assert http.get("/v1/jobs", params={"limit": "0"}).status_code == 422
        assert http.get("/v1/batches", params={"limit": "many"}).status_code == 422


@pytest.mark.parametrize("path", ["/v1/jobs/retry", "/v1/jobs/cancel", "/v1/review"])
@pytest.mark.parametrize("job_id", [BIG, -(2**64), 0])
def test_job_ids_in_bodies_are_bounded(daemon: DaemonProcess, path: str, job_id: int) -> None:
    body: dict[str, Any] = {"job_ids": [job_id]}
    if path == "/v1/review":
        body["decision"] = "approve"
    response = daemon.post(path, body)
    assert response.status_code == 422, response.text


def test_a_body_nested_100k_deep_is_a_422(daemon: DaemonProcess) -> None:
    response = _raw_post(daemon, "/v1/jobs/retry", b"[" * 100_000 + b"]" * 100_000)
    assert response.status_code == 422, response.text


def test_a_body_over_the_cap_is_refused_before_it_is_read(daemon: DaemonProcess) -> None:
    from wfbatch.daemon.responses import MAX_BODY_BYTES

    # A raw socket: httpx will not send a Content-Length it does not mean.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
        raw.settimeout(10)
        raw.connect(str(daemon.socket))
        raw.sendall(
            b"POST /v1/submit HTTP/1.1\r\nHost: wfbatch\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {MAX_BODY_BYTES + 1}\r\n\r\n{{}}".encode()
        )
        assert raw.recv(64).startswith(b"HTTP/1.1 413")


def test_a_10_mb_body_is_answered(daemon: DaemonProcess) -> None:
    # Big but under the cap: a clear 422 (not a prompt file) rather than a crash or a hang.
    body = json.dumps({"name": "big.txt", "content": "x" * 10_000_000, "format": "nope"}).encode()
    assert _raw_post(daemon, "/v1/submit", body).status_code == 422


@pytest.mark.parametrize("credits", ["nan", "-3", "inf", "-inf", "lots"])
def test_the_budget_command_refuses_a_bad_number_in_one_line(
    daemon: DaemonProcess, batch_id: str, credits: str
) -> None:
    result = daemon.cli("budget", batch_id, credits)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "CREDITS" in result.stderr
    assert daemon.get(f"/v1/batches/{batch_id}")["budget"] == 5


@pytest.mark.parametrize("credits", ["nan", "inf"])
def test_submit_budget_refuses_non_finite(daemon: DaemonProcess, credits: str, tmp_path: Any) -> None:
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(jsonl("cli budget"))
    result = daemon.cli("submit", str(prompts), "--budget", credits)
    assert result.exit_code == 2 and "finite" in result.stderr


def test_a_job_id_past_64_bits_on_the_command_line_is_a_usage_error(daemon: DaemonProcess) -> None:
    result = daemon.cli("retry", str(BIG))
    assert result.exit_code == 2 and "Traceback" not in result.output
