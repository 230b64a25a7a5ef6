"""An inbox folder deleted under a running daemon is made again (said once in the log), and files
dropped into it afterwards become batches as before."""

from __future__ import annotations

import shutil

from tests.daemon_harness import jsonl, running_daemon


def test_a_deleted_inbox_is_made_again_and_still_takes_files() -> None:
    with running_daemon(env={"WFBATCH_PROVIDER": "local"}) as daemon:
        shutil.rmtree(daemon.inbox)
        daemon.wait_until(lambda: daemon.inbox.is_dir(), timeout=60, what="the inbox made again")
        daemon.wait_until(lambda: "was gone; made it again" in daemon.log(), what="the log line")
        daemon.drop("after.jsonl", jsonl("a fox after the clean-up"))
        daemon.wait_until(lambda: daemon.status()["jobs"]["done"] == 1, timeout=60, what="the batch done")
        assert daemon.log().count("was gone; made it again") == 1
        assert "cannot read the inbox" not in daemon.log()
