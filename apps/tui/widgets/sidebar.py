"""The conversations sidebar: a search field and the list of chats, newest first.

Boundary: showing conversations and turning keys into requests. It never touches chat.db:
the screen gives it the list to show and acts on `Selected`, `DeleteRequested` and
`SearchChanged`.
"""

from __future__ import annotations

from textual import on
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.message import Message
from textual.widgets import Input, Label, OptionList
from textual.widgets.option_list import Option

from edgeai.chatdb import Conversation

TITLE_WIDTH = 23  # one line in the 28-column sidebar


class ConversationList(OptionList):
    BINDINGS = [Binding("delete,ctrl+d", "delete_highlighted", "Delete chat")]

    def action_delete_highlighted(self) -> None:
        option = self.highlighted_option
        if option is not None and option.id:
            self.post_message(Sidebar.DeleteRequested(int(option.id)))


class Sidebar(Vertical):
    # Down (or Enter) in the search field moves to the list: the list is one key away
    BINDINGS = [Binding("down", "focus_list", "To the list", show=False)]

    class Selected(Message):
        def __init__(self, conversation_id: int) -> None:
            super().__init__()
            self.conversation_id = conversation_id

    class DeleteRequested(Message):
        def __init__(self, conversation_id: int) -> None:
            super().__init__()
            self.conversation_id = conversation_id

    class SearchChanged(Message):
        def __init__(self, query: str) -> None:
            super().__init__()
            self.query = query

    def compose(self):
        yield Label("Chats", id="sidebar-title", markup=False)
        yield Input(placeholder="Search chats", id="search")
        yield ConversationList(id="conversations")

    def show(self, conversations: list[Conversation], current: int | None, query: str = "") -> None:
        listing = self.query_one(ConversationList)
        options = [Option(Content(("● " if c.id == current else "  ") + _title(c.title)), id=str(c.id))
                   for c in conversations]
        listing.set_options(options)
        ids = [c.id for c in conversations]
        if ids:  # Enter on the list always opens something, even when the open chat is filtered out
            listing.highlighted = ids.index(current) if current in ids else 0
        label = self.query_one("#sidebar-title", Label)
        label.update(f"Chats matching “{query}” ({len(ids)})" if query else f"Chats ({len(ids)})")

    @property
    def search_text(self) -> str:
        return self.query_one("#search", Input).value

    def focus_search(self, text: str | None = None) -> None:
        search = self.query_one("#search", Input)
        if text is not None:
            search.value = text
        search.focus()

    @on(Input.Changed, "#search")
    def _search(self, event: Input.Changed) -> None:
        event.stop()
        self.post_message(self.SearchChanged(event.value.strip()))

    @on(Input.Submitted, "#search")
    def _to_list(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_focus_list()

    def action_focus_list(self) -> None:
        self.query_one(ConversationList).focus()

    @on(OptionList.OptionSelected)
    def _selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id:
            self.post_message(self.Selected(int(event.option.id)))


def _title(title: str) -> str:
    title = " ".join(title.split())
    return title if len(title) <= TITLE_WIDTH else title[:TITLE_WIDTH - 1] + "…"
