"""What a person may type for a batch — its id, a unique prefix of it (as git takes commits), or
its name — turned into the batch. Every route that takes a batch goes through `resolve_batch`, so
the CLI and the TUI accept the same things and get the same refusals."""

from __future__ import annotations

from wfbatch.daemon.context import DaemonContext
from wfbatch.daemon.responses import ApiProblem
from wfbatch.store import BatchRow

SHOWN_CANDIDATES = 5


async def resolve_batch(ctx: DaemonContext, ref: str | None) -> BatchRow:
    """The one batch `ref` names; 404 when none does, 409 naming the candidates when several do."""
    ref = (ref or "").strip()
    if not ref:
        raise ApiProblem(400, "a batch id (or a unique prefix of it, or the batch's name) is needed")
    exact = await ctx.store.batches.get_batch(ref)
    if exact is not None:
        return exact
    found = await ctx.store.batches.batches_named(ref, limit=SHOWN_CANDIDATES + 1)
    if not found:
        raise ApiProblem(404, f"no batch {ref!r} (give its id, a unique prefix of it, or its name)")
    if len(found) > 1:
        shown = ", ".join(f"{b.id} ({b.name})" for b in found[:SHOWN_CANDIDATES])
        more = " and more" if len(found) > SHOWN_CANDIDATES else ""
        raise ApiProblem(409, f"{ref!r} names several batches: {shown}{more}; give more of the id")
    return found[0]


async def resolve_optional(ctx: DaemonContext, ref: str | None) -> str | None:
    """The full id of the batch `ref` names, or None when no batch is named."""
    return (await resolve_batch(ctx, ref)).id if ref else None
