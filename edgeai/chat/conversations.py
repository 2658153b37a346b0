"""Whole conversations: a new chat's title, deleting one with everything named after it, and
clearing its messages.

Boundary: the writes that concern a conversation rather than a turn, so the app's screen and
commands (and the REPL's `/clear`) call one function instead of doing each part themselves. A
deleted conversation takes its row (and, by the foreign key, its messages), its KV file and the
collection `/attach` filled for it (`chat-<id>`); a named collection it used stays.
"""

from __future__ import annotations

from edgeai.chat.kv import kv_path
from edgeai.chat.rag import forget_chat_collection
from edgeai.chatdb import ChatDB
from edgeai.config import Settings

NEW_TITLE = "New chat"  # a conversation with this title is named after its first message
TITLE_CHARS = 48


def title_from(text: str) -> str:
    """A title from the first message: its first line, whitespace collapsed, at most 48 chars."""
    line = " ".join(text.strip().splitlines()[0].split()) if text.strip() else NEW_TITLE
    return line if len(line) <= TITLE_CHARS else line[:TITLE_CHARS - 1] + "…"


def delete_conversation(settings: Settings, db: ChatDB, conversation_id: int) -> None:
    """The conversation, its messages, its KV file and its own collection `chat-<id>`."""
    db.delete(conversation_id)
    if not db.persistent:
        return  # an in-memory chat's id names nothing on disk
    kv_path(settings.home, db, conversation_id).unlink(missing_ok=True)
    forget_chat_collection(settings, conversation_id)


def clear_conversation(settings: Settings, db: ChatDB, conversation_id: int) -> int:
    """Delete every message (the conversation and its settings stay) and its KV file, which
    holds the history just deleted. Returns how many messages went."""
    removed = db.clear(conversation_id)
    if db.persistent:
        kv_path(settings.home, db, conversation_id).unlink(missing_ok=True)
    return removed
