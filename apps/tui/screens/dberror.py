"""Shown instead of the chat when chat.db cannot be opened: what is wrong and the way forward.

The file is not touched: `edgeai chat --reset-db` moves it aside and starts a fresh one.
"""

from __future__ import annotations

from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, Label, Static

from edgeai.chatdb import ChatDBError


class DBErrorScreen(Screen[None]):
    BINDINGS = [Binding("q,escape", "app.quit", "Quit")]

    def __init__(self, error: ChatDBError) -> None:
        super().__init__()
        self.error = error

    def compose(self):
        with Vertical(classes="dialog db-error"):
            yield Label("Your chat history cannot be opened", classes="dialog-title")
            yield Static(self.error.message, markup=False, id="db-error-message")
            yield Static(f"Nothing was changed. To keep the old file and start fresh, quit and run:\n\n"
                         f"    edgeai chat --reset-db\n\n"
                         f"It moves {self.error.path.name} aside (renamed, not deleted).",
                         markup=False, id="db-error-hint")
        yield Footer()
