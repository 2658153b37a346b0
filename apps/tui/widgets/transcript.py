"""The scrolling list of messages and notices of the open conversation.

Boundary: which views are shown and in what order. It stays anchored to the bottom while a
reply streams, so new text is always in sight unless the user scrolls up to read.
"""

from __future__ import annotations

from textual.containers import VerticalScroll
from textual.widget import AwaitMount

from edgeai.chatdb import StoredMessage
from edgeai.runtime.loaded import short_id
from edgeai.tui.widgets.message import MessageView, Notice

WELCOME = ("Ask anything. Enter sends · Ctrl+J adds a line · / for commands · F1 for keys · "
           "Ctrl+O picks a model")
MAX_SHOWN = 200  # older messages stay in chat.db (and in exports); rendering thousands is slow


class Transcript(VerticalScroll):
    def views(self) -> list[MessageView]:
        return list(self.query(MessageView))

    def view_for(self, message_id: int) -> MessageView | None:
        return next((v for v in self.views() if v.message_id == message_id), None)

    async def show(self, messages: list[StoredMessage], label: str, show_stats: bool,
                   system: str | None = None) -> None:
        await self.remove_children()
        hidden = max(0, len(messages) - MAX_SHOWN)
        widgets: list[MessageView | Notice] = [Notice(f"system prompt: {system}")] if system else []
        if hidden:
            widgets.append(Notice(f"{hidden} earlier messages are not shown (/export has them all)"))
        widgets += [MessageView(m, short_id(m.stats.get("model", label)), show_stats)
                    for m in messages[hidden:]]
        if not messages:
            welcome = Notice(WELCOME)
            welcome.add_class("welcome")
            widgets.append(welcome)
        await self.mount_all(widgets)
        self.scroll_end(animate=False)
        self.anchor()

    def add(self, view: MessageView | Notice) -> AwaitMount:
        for welcome in self.query(".welcome"):
            welcome.remove()
        mounted = self.mount(view)
        self.anchor()
        return mounted

    def notice(self, text: str, error: bool = False) -> AwaitMount:
        return self.add(Notice(text, error))

    async def remove_from(self, message_id: int) -> None:
        """Remove a message's view and everything after it (edit-resend, regenerate)."""
        children = list(self.children)
        start = next((i for i, w in enumerate(children)
                      if isinstance(w, MessageView) and w.message_id == message_id), None)
        if start is not None:
            await self.remove_children(children[start:])

    def last(self, role: str) -> MessageView | None:
        return next((v for v in reversed(self.views()) if v.role == role), None)
