"""Bad input: hypothesis-generated prompt files dropped into a running daemon's inbox — binary,
huge lines, broken JSON/CSV, BOMs, CRLF, non-UTF-8, empty files, partial writes, symlinks leading
out of the inbox. The daemon must not crash; each file is accepted whole (its jobs all queued) or
refused with an error file naming the line (or, for a whole-file problem — empty, UTF-16,
unsupported type, too large — saying so); a symlink
out of the inbox is left alone. The job count always equals the sum of accepted files' entries."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.daemon_harness import DaemonProcess, running_daemon
from tests.reliability.support import SOAK, pick
from wfbatch.core.expand import expand_batch
from wfbatch.core.parsing import PromptFileError, parse_prompt_bytes

EXAMPLES = pick(25, 300)
WHOLE_FILE_PROBLEMS = ("empty file", "unsupported file type", "too large", "cannot be read", "UTF-16")
tally: Counter[str] = Counter()

prompt_text = st.text(st.characters(exclude_categories=["Cs"]), min_size=0, max_size=40)


@st.composite
def prompt_files(draw: st.DrawFn) -> tuple[str, bytes, str]:
    """(suffix, content, how it is dropped)."""
    suffix = draw(st.sampled_from([".jsonl", ".txt", ".csv", ".json", ".jsonl", ".bin"]))
    kind = draw(st.sampled_from(["binary", "lines", "jsonl", "csv", "json", "huge", "empty"]))
    prompts = draw(st.lists(prompt_text, min_size=1, max_size=6))
    if kind == "binary":
        body = draw(st.binary(max_size=300))
    elif kind == "lines":
        body = "\n".join(prompts).encode()
    elif kind == "jsonl":
        lines = [json.dumps({"prompt": p, "width": 64, "height": 64}) for p in prompts]
        if draw(st.booleans()):  # break one line
            i = draw(st.integers(0, len(lines) - 1))
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
        body = "\n".join(lines).encode()
    elif kind == "csv":
        rows = ["prompt,width,height", *(f'"{p}",64,64' for p in prompts)]
        if draw(st.booleans()):
            rows.append(draw(st.sampled_from(['"unterminated,64', "a,b,c,d,e", ",,", '"x""y",64,64'])))
        body = "\n".join(rows).encode()
    elif kind == "json":
        spec = json.dumps({"name": "fuzz", "prompts": prompts, "defaults": {"width": 64, "height": 64}})
        body = spec[: draw(st.integers(0, len(spec)))].encode() if draw(st.booleans()) else spec.encode()
    elif kind == "huge":
        body = b"x" * draw(st.sampled_from([40_000, 2_000_000])) + b"\n"
    else:
        body = b""
    if draw(st.booleans()):
        body = body.replace(b"\n", b"\r\n")
    if draw(st.integers(0, 3)) == 0:
        body = b"\xef\xbb\xbf" + body
    if draw(st.integers(0, 3)) == 0:
        body += draw(st.sampled_from([b"\xe9t\xe9\n", b"\xff\xfe", b"\x80"]))
    how = draw(st.sampled_from(["rename", "rename", "rename", "partial", "symlink"]))
    return suffix, body, how


@pytest.fixture(scope="module")
def daemon() -> Iterator[DaemonProcess]:
    env = {"WFBATCH_INBOX__STABLE_SECONDS": "0.2", "WFBATCH_PROVIDER": "local"}
    with running_daemon(env=env) as running:
        running.post("/v1/pause", {"scope": "global"}).raise_for_status()  # keep the jobs queued
        yield running


def expected_jobs(name: str, raw: bytes) -> int | None:
    try:
        return len(expand_batch(parse_prompt_bytes(raw, name), "local"))
    except PromptFileError:
        return None


def total_jobs(daemon: DaemonProcess) -> int:
    return sum(daemon.status()["jobs"].values())


def outcome(daemon: DaemonProcess, name: str) -> str | None:
    if (daemon.home / "rejected" / name).exists():
        return "rejected"
    if (daemon.home / "archive" / f"duplicate-{name}").exists():
        return "duplicate"
    if any(daemon.home.joinpath("archive").glob(f"*-{name}")):
        return "accepted"
    return None


@pytest.mark.timeout(pick(120, 900))
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not SOAK,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(case=prompt_files(), n=st.integers(0, 10**9))
def test_any_file_is_taken_whole_or_refused_with_the_line(
    daemon: DaemonProcess, case: tuple[str, bytes, str], n: int
) -> None:
    suffix, raw, how = case
    name = f"f{n}-{time.monotonic_ns()}{suffix}"
    before = total_jobs(daemon)
    tally["inputs"] += 1
    if how == "symlink":
        outside = daemon.home / f"outside-{name}"
        outside.write_bytes(raw)
        link = daemon.inbox / name
        link.symlink_to(outside)
        # A sentinel dropped after it, refused without a job: once its error file is written, the
        # watcher has looked at the link too (no sleep that merely gives it time).
        sentinel = f"{name}.sentinel.md"
        daemon.drop(sentinel, "a prompt\n")
        error_file = daemon.home / "rejected" / f"{sentinel}.error.txt"
        daemon.wait_until(error_file.exists, what=f"{sentinel} to be refused")
        assert link.is_symlink(), "a symlink out of the inbox was taken"
        assert total_jobs(daemon) == before
        link.unlink()
        tally["symlink ignored"] += 1
        return
    if how == "partial":  # written in place, in two parts: the watcher must wait for the second
        target = daemon.inbox / name
        with target.open("wb") as handle:
            handle.write(raw[: len(raw) // 2])
            handle.flush()
            time.sleep(0.05)
            handle.write(raw[len(raw) // 2 :])
    else:
        staged = daemon.home / f".staged-{name}"
        staged.write_bytes(raw)
        staged.rename(daemon.inbox / name)
    result = daemon.wait_until(lambda: outcome(daemon, name), timeout=20, what=f"{name} to leave the inbox")
    assert daemon.returncode is None, daemon.log()
    tally[result] += 1
    expected = expected_jobs(name, raw)
    if result == "accepted":
        assert expected is not None
        assert total_jobs(daemon) == before + expected
    else:
        assert total_jobs(daemon) == before
    if result == "rejected":
        assert expected is None
        report = (daemon.home / "rejected" / f"{name}.error.txt").read_text()
        names_a_line = re.search(rf"{re.escape(name)}:\d+", report) is not None
        whole_file = any(problem in report for problem in WHOLE_FILE_PROBLEMS)
        assert names_a_line or whole_file, report
        tally["rejected naming a line" if names_a_line else "rejected as a whole file"] += 1


def test_the_daemon_survived_every_input(daemon: DaemonProcess, capsys: pytest.CaptureFixture[str]) -> None:
    """Runs after the generated inputs (same daemon): it still answers, and the tally is shown."""
    assert daemon.returncode is None and daemon.answers()
    if SOAK:
        with capsys.disabled():
            print(f"\n[bad input] {dict(tally)} daemon crashes=0")
