"""Review shows both: the TUI's detail pane draws the picture a job started from beside what it
made, and the contact sheet puts the input's cell beside its result's."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

from PIL import Image as PILImage
from textual.app import App, ComposeResult
from textual.containers import Horizontal

from tests.test_store import make_jobs
from tests.test_store_contract import batch_row
from wfbatch.core.models import InputImage
from wfbatch.core.states import JobState, ReviewStatus
from wfbatch.engine.loop.writer import sheet_items
from wfbatch.outputs.contact_sheet import LABEL_HEIGHT, PADDING, render_contact_sheet
from wfbatch.protocol import JobDetail, JobInput
from wfbatch.store import Store
from wfbatch.tui.widgets.detail import DetailPane, describe_job


def png(path: Path, color: str) -> Path:
    PILImage.new("RGB", (40, 30), color).save(path)
    return path


def detail(tmp_path: Path) -> JobDetail:
    source = png(tmp_path / "shoe.png", "navy")
    result = png(tmp_path / "out.png", "orange")
    return JobDetail(
        id=3, batch_id="b1", index=1, line=1, state=JobState.DONE, review=ReviewStatus.PENDING,
        prompt="the shoe on oak", provider="stability", attempts=1, updated_at=1_700_000_000.0,
        seed=1, width=1024, height=1024, variant=0, format="png", output_dir=str(tmp_path),
        file_path=str(result),
        inputs=[JobInput(role="image", source="shots/shoe.png", path=str(source), sha256="ab" * 32)],
    )


class PaneApp(App[None]):
    def __init__(self, job: JobDetail) -> None:
        super().__init__()
        self.job = job

    def compose(self) -> ComposeResult:
        yield DetailPane(id="detail", graphics=False)

    async def on_mount(self) -> None:
        self.query_one(DetailPane).job = self.job


async def test_the_detail_pane_shows_the_input_beside_the_result(tmp_path: Path) -> None:
    job = detail(tmp_path)
    assert "input image  shots/shoe.png  sha256 abababababab" in describe_job(job).plain
    app = PaneApp(job)
    async with app.run_test() as pilot:
        await pilot.pause()
        pairs = app.query(".pictures")
        assert len(pairs) == 1
        pair = pairs.first(Horizontal)
        assert len(pair.query(".picture")) == 2  # the input, then the result


async def test_the_contact_sheet_puts_each_input_beside_its_result(tmp_path: Path) -> None:
    source = png(tmp_path / "shoe.png", "navy")
    picture = InputImage("image", "shots/shoe.png", str(source), "cd" * 32, 100, 40, 30, "image/png")
    new = make_jobs(2)
    new[0] = new[0]._replace(spec=replace(new[0].spec, inputs=(picture,)))
    store = await Store.open(tmp_path / "w.db")
    try:
        await store.batches.insert_batch(batch_row(), new)
        first, second = await store.jobs.jobs_for_batch("b1")
    finally:
        await store.close()
    jobs = [replace(first, file="pending-review/a.png"), replace(second, file="pending-review/b.png")]
    items = sheet_items(jobs, tmp_path)
    assert [label for label, _ in items] == ["1 input: shots/shoe.png", "1: prompt 0", "2: prompt 1"]
    assert items[0][1] == source and items[1][1] == tmp_path / "pending-review/a.png"
    sheet = render_contact_sheet(items, thumb=64, columns=2)
    with PILImage.open(io.BytesIO(sheet)) as image:  # the input and its result side by side, row 1
        assert image.size == (2 * (64 + PADDING) + PADDING, 2 * (64 + LABEL_HEIGHT + PADDING) + PADDING)
        assert image.getpixel((PADDING + 32, PADDING + 32))[:3] == (0, 0, 128)  # navy: the input
