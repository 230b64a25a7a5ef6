"""The start-up check of what several daemons on one PostgreSQL database need of their files."""

from __future__ import annotations

from pathlib import Path

from wfbatch.daemon.fleet_files import check_fleet_files, shared_folder
from wfbatch.home import HomeLayout
from wfbatch.settings import load_settings


def test_sqlite_needs_nothing_shared(tmp_path: Path) -> None:
    layout = HomeLayout(tmp_path)
    assert check_fleet_files(load_settings(tmp_path), layout) == []


def test_a_shared_database_with_local_folders_says_what_is_not_shared(tmp_path: Path) -> None:
    layout = HomeLayout(tmp_path)
    settings = load_settings(tmp_path, store={"database_url": "postgresql://u:secret-pw@db.invalid/q"})
    assert not shared_folder(tmp_path)  # the test's temp folder is a local disk
    problems = check_fleet_files(settings, layout)
    assert len(problems) == 2
    assert str(layout.cache) in problems[0] and "paid" in problems[0]
    assert "[delivery] url" in problems[1]
    assert all("secret-pw" not in problem for problem in problems)


def test_a_delivery_bucket_shares_the_outputs(tmp_path: Path) -> None:
    settings = load_settings(
        tmp_path,
        store={"database_url": "postgresql://u@db.invalid/q"},
        delivery={"url": "s3://shared-bucket/out/"},
    )
    problems = check_fleet_files(settings, HomeLayout(tmp_path))
    assert len(problems) == 1 and "cache" in problems[0]
