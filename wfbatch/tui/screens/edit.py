"""The `e` modal: change a failed job's prompt; enter requeues it, escape leaves it alone."""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label


class EditPromptScreen(ModalScreen[str | None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, job_id: int, prompt: str, error: str | None) -> None:
        super().__init__()
        self.job_id = job_id
        self.prompt = prompt
        self.error = error

    def compose(self) -> ComposeResult:
        with Vertical(id="edit-box"):
            yield Label(f"Edit the prompt of job {self.job_id}; enter requeues it, escape cancels.")
            if self.error:
                # The provider's words as they came, not read as markup.
                yield Label(f"It failed with: {self.error}", id="edit-error", markup=False)
            yield Input(value=self.prompt, id="edit-input")

    @on(Input.Submitted)
    def _submit(self, event: Input.Submitted) -> None:
        prompt = event.value.strip()
        self.dismiss(prompt if prompt and prompt != self.prompt else None)

    def action_cancel(self) -> None:
        self.dismiss(None)
