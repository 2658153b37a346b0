"""A small modal asking for a conversation's new title; dismisses with the text or None."""

from __future__ import annotations

from textual import on
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label


class RenameScreen(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, title: str) -> None:
        super().__init__()
        self.old_title = title

    def compose(self):
        with Vertical(classes="dialog"):
            yield Label("Rename conversation", classes="dialog-title")
            yield Input(self.old_title, id="title")
            yield Label("Enter saves · Esc cancels", classes="dialog-hint")

    @on(Input.Submitted)
    def _save(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)
