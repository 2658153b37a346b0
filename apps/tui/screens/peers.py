"""Another edgeai window on the same data dir: what it writes shows here, and this window never
sends on a history it has not shown.

Boundary: noticing and refreshing. The store says who else is there (`ChatDB.others_open`, a
slot lock per open chat.db) and when they wrote (`ChatDB.data_version`, SQLite's counter of
other connections' commits); this module polls it and redraws the sidebar and the open chat.

Why refresh rather than open the second window read-only: people keep chats open side by side
(several Open WebUI tabs, oterm in two terminals) and expect each window to keep working and to
show the other's messages, as any chat client does, not a vim-style "opened read-only". The
harm in #17 was the silence: a stale view, and a model answering a history the user never saw.
So both stay writable, each shows what the other wrote within a second, a send on a chat that
changed unseen is held (the text stays in the prompt) until the change is on screen, and a
send while the other window is still writing a reply in the same chat waits for that reply.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgeai.chat.store import conversation_exists
from edgeai.tui.widgets.transcript import MAX_SHOWN

if TYPE_CHECKING:
    from edgeai.chatdb import StoredMessage
    from edgeai.tui.screens.chat import ChatScreen

POLL_S = 1.0  # a PRAGMA read per second: nothing next to a frame, and soon enough for a person
CHANGED = ("This chat changed in another edgeai window: its messages are shown above. "
           "Enter sends yours on this history.")
BUSY = ("A reply is being written in another edgeai window in this chat: it shows here as it "
        "grows; send once it is done (your text is kept).")
JOINED = ("Another edgeai window has this data dir open: each shows what the other writes, "
          "within a second.")


def watch(screen: ChatScreen) -> None:
    """Start watching (from the screen's mount), and say so if another window is already open."""
    screen.peer_version = screen.db.data_version()
    screen.set_interval(POLL_S, lambda: refresh(screen))
    if screen.db.others_open():
        screen.transcript.notice(JOINED)


async def refresh(screen: ChatScreen) -> bool:
    """Bring another window's writes in; True when the open chat's messages changed here."""
    db = screen.db
    version = db.data_version()
    if version == screen.peer_version or not screen.is_mounted:
        return False
    conversation = screen.conversation
    if conversation is None or (screen.job is not None and screen.job.conversation.id == conversation.id):
        _sidebar(screen)
        return False  # our own reply is streaming into its views: redraw once it is done
    screen.peer_version = version
    _sidebar(screen)
    if not conversation_exists(db, conversation.id):  # deleted in the other window
        remaining = db.conversations()
        if remaining:
            await screen.open_conversation(remaining[0].id)
        else:
            await screen.new_conversation()
        screen.transcript.notice("The chat that was open here was deleted in another edgeai window.")
        return True
    rows = db.messages(conversation.id)
    if _shown(screen) == _fingerprint(rows[max(0, len(rows) - MAX_SHOWN):]):
        return False
    screen.conversation = db.conversation(conversation.id)  # a title or system prompt may have changed
    if screen.editing is not None and screen.editing not in {m.id for m in rows}:
        screen.cancel_edit()  # the message being edited is gone
    model = screen.chat_app.model
    await screen.transcript.show(rows, model.label if model else "assistant", screen.show_stats,
                                 screen.conversation.system)
    screen.prompt.prompts = [m.content for m in rows if m.role == "user"]
    screen.status.set(note="updated from another window")
    return True


async def held(screen: ChatScreen) -> bool:
    """Before a send or a regenerate: True (and why, in the transcript) when it must wait."""
    changed = await refresh(screen)
    conversation = screen.conversation
    if conversation is None:
        return False
    if changed:
        screen.transcript.notice(CHANGED)
        return True
    writing = any(m.status == "streaming" for m in screen.db.messages(conversation.id))
    if writing and screen.db.others_open():  # with nobody else open, it is a dead process's row
        screen.transcript.notice(BUSY)
        return True
    return False


def _fingerprint(rows: list[StoredMessage]) -> list[tuple[int, str, str]]:
    return [(m.id, m.status, m.content) for m in rows]


def _shown(screen: ChatScreen) -> list[tuple[int, str, str]]:
    return [(v.message_id, v.status, v.content) for v in screen.transcript.views()]


def _sidebar(screen: ChatScreen) -> None:
    """Redraw the chat list only when it differs: a redraw moves the highlight back to the open chat."""
    conversations = screen.db.conversations(search=screen.sidebar_query() or None)
    if [(c.id, c.title) for c in conversations] != screen.listed:
        screen.refresh_sidebar(conversations)  # the rows just read: no second query
