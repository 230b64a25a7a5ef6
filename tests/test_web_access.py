"""The web app's doors, against a real daemon serving it on loopback: no cookie, no page; a
change needs this server's Origin and the session's CSRF token (and changes nothing otherwise:
the files stay where they were); a foreign Host is refused; only 127.0.0.1 listens."""

from __future__ import annotations

import datetime as dt
import html
import re
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from starlette.routing import Mount, Route

from tests.daemon_harness import DaemonProcess, jsonl, running_daemon
from tests.web_harness import WebClient, web_daemon
from wfbatch.client import DaemonClient
from wfbatch.protocol import BatchSummary
from wfbatch.web import build_web_app
from wfbatch.web.routes_actions import confined_image
from wfbatch.web.routes_queue import batch_row

JOBS = 4
Served = tuple[DaemonProcess, WebClient, list[int]]


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    with web_daemon() as (daemon, web):
        daemon.drop("doors.jsonl", jsonl(*(f"a brass door, take {i}" for i in range(JOBS))))
        daemon.wait_for_jobs(lambda jobs: jobs.get("done", 0) == JOBS)
        job_ids = sorted(int(job["id"]) for job in daemon.get("/v1/jobs", state="done")["items"])
        yield daemon, web, job_ids


def _where(daemon: DaemonProcess, job_id: int) -> tuple[str, str]:
    """The job's review state and the folder its image is in, as the daemon and the disk say."""
    job = daemon.get(f"/v1/jobs/{job_id}")
    path = Path(job["file_path"])
    assert path.is_file(), path
    return job["review"], path.parent.name


def _all_routes() -> set[tuple[str, str]]:
    """Every (method, path) the app has, read from the app itself: a new route is covered below
    or this test fails until it is."""
    app, _ = build_web_app(DaemonClient(Path("/nonexistent.sock")), token="x" * 43, output_root=Path("/tmp"))
    found: set[tuple[str, str]] = set()
    for route in app.routes:
        if isinstance(route, Route):
            for method in sorted((route.methods or set()) - {"HEAD"}):
                found.add((method, route.path))
        elif isinstance(route, Mount):
            found.add(("GET", route.path + "/{path}"))
    return found


REQUESTS = {
    ("GET", "/"): "/",
    ("GET", "/queue"): "/queue",
    ("GET", "/jobs/{job_id:int}"): "/jobs/{job}",
    ("GET", "/img/{job_id:int}"): "/img/{job}",
    ("GET", "/api/events"): "/api/events",
    ("GET", "/favicon.ico"): "/favicon.ico",
    ("GET", "/static/{path}"): "/static/app.css",
    ("POST", "/api/review"): "/api/review",
    ("POST", "/api/retry"): "/api/retry",
    ("POST", "/api/cancel"): "/api/cancel",
    ("POST", "/api/logout"): "/api/logout",
}


def test_the_login_url_comes_from_the_cli_and_the_token_file_is_private(served: Served) -> None:
    daemon, web, _ = served
    result = daemon.cli("web")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == web.login_url
    folder = daemon.home / "web"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "token").stat().st_mode) == 0o600
    assert web.token not in daemon.log()


def test_without_the_cookie_every_page_and_api_answer_is_401(served: Served) -> None:
    daemon, web, job_ids = served
    assert _all_routes() - {("GET", "/login")} == set(REQUESTS), "a route without a refusal check"
    outsider = WebClient(daemon)  # no login: no cookie
    try:
        for (method, _), path in REQUESTS.items():
            url = path.format(job=job_ids[0])
            for accept in ("text/html", "application/json"):
                headers = {"accept": accept, "origin": outsider.base}
                response = outsider.http.request(method, url, headers=headers, json={"job_ids": job_ids})
                assert response.status_code == 401, (method, url, accept, response.status_code)
                assert "set-cookie" not in response.headers
        # A made-up cookie is no better than none.
        outsider.http.cookies.set("wfbatch_session", "made-up")
        assert outsider.get("/", headers={"accept": "text/html"}).status_code == 401
        # A wrong token logs nobody in.
        wrong = outsider.get("/login?token=" + "A" * len(web.token))
        assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
    finally:
        outsider.close()
    assert all(_where(daemon, job_id) == ("pending", "pending-review") for job_id in job_ids)


def test_the_login_sets_a_strict_httponly_cookie_and_redirects_the_token_away(
    served: Served,
) -> None:
    _, web, _ = served
    response = web.login()
    assert response.headers["location"] == "/"
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    assert web.get("/", headers={"accept": "text/html"}).status_code == 200
    page = web.get("/queue", headers={"accept": "text/html"})
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"


def test_a_post_with_a_foreign_origin_or_without_the_csrf_token_changes_nothing(
    served: Served,
) -> None:
    daemon, web, job_ids = served
    web.login()
    target = job_ids[1]
    body = {"job_ids": [target], "decision": "approve"}
    refusals = {
        "foreign origin": web.post_json("/api/review", body, origin="http://evil.example"),
        "a look-alike origin": web.post_json("/api/review", body, origin=f"http://127.0.0.1:{web.port}.evil.example"),
        "no origin": web.post_json("/api/review", body, origin=None),
        "no csrf token": web.post_json("/api/review", body, csrf=None),
        "a wrong csrf token": web.post_json("/api/review", body, csrf="not-the-token"),
        "a form post": web.http.post(
            "/api/review", data={"job_ids": str(target), "decision": "approve"},
            headers={"origin": "http://evil.example"},
        ),
        "retry from elsewhere": web.post_json("/api/retry", {"all_failed": True}, origin="http://evil.example"),
        "cancel without csrf": web.post_json("/api/cancel", {"job_ids": [target]}, csrf=None),
    }
    for what, response in refusals.items():
        assert response.status_code == 403, (what, response.status_code, response.text)
    assert _where(daemon, target) == ("pending", "pending-review")
    # The same request from the page itself goes through: the refusals above were the checks.
    accepted = web.post_json("/api/review", body)
    assert accepted.status_code == 200, accepted.text
    assert _where(daemon, target) == ("approved", "approved")


def test_the_gallery_filters_by_batch_state_and_text(served: Served) -> None:
    _, web, job_ids = served
    web.login()

    def shown(query: str) -> list[int]:
        page = web.get(f"/?{query}", headers={"accept": "text/html"})
        assert page.status_code == 200
        return [int(found) for found in re.findall(r'class="card"[^>]*data-id="(\d+)"', page.text)]

    assert shown("state=all") == job_ids
    assert shown("state=all&q=take+3") == [job_ids[3]]
    assert shown("state=all&q=no+such+prompt") == []
    batch = web.daemon.get("/v1/batches")["items"][0]["id"]
    assert shown(f"state=all&batch={batch}") == job_ids
    assert set(shown("state=pending")) <= set(job_ids)
    assert all(job_id not in shown("state=rejected") for job_id in shown("state=pending"))


def test_the_queue_shows_a_hold_with_its_reason_and_what_lifts_it(served: Served) -> None:
    daemon, web, _ = served
    web.login()
    assert daemon.post("/v1/pause", {"scope": "global", "reason": "lunch break"}).status_code == 200
    try:
        hold = daemon.status()["holds"][0]
        live = web.get("/queue?part=live", headers={"accept": "text/html"})
        assert live.status_code == 200
        assert "lunch break" in live.text and html.escape(hold["lift"]) in live.text
        assert "everything paused" in live.text
    finally:
        assert daemon.post("/v1/resume", {"scope": "global"}).status_code == 200
    assert "Nothing is held." in web.get("/queue?part=live").text


def test_a_foreign_host_header_is_refused(served: Served) -> None:
    daemon, web, job_ids = served
    web.login()
    for host in ("evil.example", f"evil.example:{web.port}", "127.0.0.1", f"127.0.0.2:{web.port}"):
        for path in ("/", "/queue", f"/img/{job_ids[0]}", f"/login?token={web.token}"):
            response = web.get(path, headers={"host": host, "accept": "text/html"})
            assert response.status_code == 403, (host, path, response.status_code)
            assert "set-cookie" not in response.headers
        review = web.post_json(
            "/api/review", {"job_ids": [job_ids[2]], "decision": "reject"}, headers={"host": host}
        )
        assert review.status_code == 403
    assert _where(daemon, job_ids[2]) == ("pending", "pending-review")
    assert web.get("/", headers={"host": f"localhost:{web.port}", "accept": "text/html"}).status_code == 200


def test_the_web_app_listens_on_loopback_only(served: Served) -> None:
    daemon, web, _ = served
    listening = [
        conn.laddr for conn in psutil.Process(daemon.pid).net_connections(kind="inet")
        if conn.status == psutil.CONN_LISTEN
    ]
    assert ("127.0.0.1", web.port) in [(addr.ip, addr.port) for addr in listening]
    assert all(addr.ip == "127.0.0.1" for addr in listening), listening


def test_an_image_is_served_only_from_inside_its_batch_folder(
    served: Served, tmp_path: Path,
) -> None:
    _, web, job_ids = served
    web.login()
    image = web.get(f"/img/{job_ids[3]}")
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.content.startswith(b"\x89PNG")
    assert web.get("/img/999999").status_code == 404
    output = tmp_path / "output"
    batch = output / "batch"
    (batch / "approved").mkdir(parents=True)
    inside = batch / "approved" / "1.png"
    inside.write_bytes(b"\x89PNG")
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG")
    (batch / "approved" / "2.png").symlink_to(secret)
    (batch / "approved" / "3.txt").write_text("not an image")
    assert confined_image(str(inside), str(batch), output) == (inside.resolve(), "image/png")
    assert isinstance(confined_image(str(secret), str(batch), output), str)
    assert isinstance(confined_image(str(batch / "approved" / "2.png"), str(batch), output), str)
    assert isinstance(confined_image(str(batch / "approved" / "3.txt"), str(batch), output), str)
    assert isinstance(confined_image(str(batch / "approved" / "1.png"), str(tmp_path), output), str)


def test_wfbatch_web_starts_the_web_app_on_a_daemon_started_without_it() -> None:
    with running_daemon(env={"WFBATCH_WEB__PORT": "0"}) as daemon:
        assert not (daemon.home / "web" / "server.json").exists()
        result = daemon.cli("web")
        assert result.exit_code == 0, result.output
        url = result.output.strip()
        assert url.startswith("http://127.0.0.1:") and "/login?token=" in url
        web = WebClient(daemon)
        try:
            assert url == web.login_url
            web.login()
            assert web.get("/queue", headers={"accept": "text/html"}).status_code == 200
        finally:
            web.close()
        again = daemon.cli("web")  # a second time: the same server, the same URL
        assert again.exit_code == 0 and again.output.strip() == url


def test_a_web_port_in_use_is_one_clear_line_and_the_daemon_goes_on() -> None:
    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with running_daemon(env={"WFBATCH_WEB__PORT": str(port)}) as daemon:
            result = daemon.cli("web")
            assert result.exit_code == 2
            assert f"cannot listen on 127.0.0.1:{port}" in result.output
            assert "[web] port" in result.output
            assert daemon.status()["jobs"] is not None  # the daemon itself still answers
    finally:
        taken.close()


def test_the_queue_says_a_batch_is_scheduled_not_just_a_long_eta() -> None:
    # Seen in a rehearsal: a batch submitted `--at 02:00` showed only "7h 17m" on /queue, where
    # `status` and the TUI say "scheduled 02:00".
    at = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)).replace(second=0, microsecond=0)
    batch = BatchSummary(
        id="b1", name="nightly", source_name="nightly.json", provider="local",
        created_at=dt.datetime.now(dt.UTC), output_dir="/tmp/x", paused=False, counts={"queued": 2},
        total=2, eta_seconds=7200.0, not_before=at,
    )
    row = batch_row(batch)
    assert row["eta"] == f"scheduled {at.astimezone():%H:%M} (2h 00m)"
    assert batch_row(batch.model_copy(update={"not_before": None}))["eta"] == "2h 00m"
    held = batch.model_copy(update={"eta_seconds": None, "pause_reason": "outside its [schedule] windows"})
    assert batch_row(held)["eta"] == f"scheduled {at.astimezone():%H:%M}"  # its own time, as status says
