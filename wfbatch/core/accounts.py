"""How a per-workflow account is named: a Wireflow key with several `workflow_ids` is one account
per workflow, `<account>/<workflow>`; the configured account before the slash is the one whose key,
request window, holds and daily credit cap its workflows share. (The store's SQL reads the same
rule: `store/ledger.py`'s account-day exposure and PostgreSQL's account-day counter rows.)"""

from __future__ import annotations


def workflow_account(account: str, workflow: str) -> str:
    """The name of `account`'s account for one of its workflows."""
    return f"{account}/{workflow}"


def key_account_of(name: str) -> str:
    """The configured account whose key `name` uses: itself, or the owner of a workflow's account."""
    return name.split("/", 1)[0]
