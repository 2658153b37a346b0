"""Opening chat.db: the one way `edgeai chat` (app and `--plain --reset-db`) and the app itself
(when it is given no database, as in bench/tui.py) open it, and whether a conversation still
exists.

Boundary: `<home>/chat.db` in, an open `ChatDB` out. A damaged or foreign file raises
`ChatDBError` and is left as it is, unless the user asked for `--reset-db`: then it is moved
aside (renamed, not deleted) and a fresh one is created. The store itself is `edgeai.chatdb`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from edgeai.chatdb import ChatDB, ChatDBError
from edgeai.config import Settings
from edgeai.errors import EdgeAIError


def open_chat_db(settings: Settings, *, reset: bool = False, clock: Callable[[], float] = time.time,
                 report: Callable[[str], None] | None = None) -> ChatDB:
    """Open chat.db; a broken one raises ChatDBError (its hint names --reset-db) unless `reset`,
    in which case it and `kv/` are moved aside (`chat.db.broken-<time>`, `kv.broken-<time>`) and
    `report` is told where the old file went."""
    path = settings.home / "chat.db"
    try:
        return ChatDB(path, clock=clock)
    except ChatDBError as exc:
        if not reset:
            raise
        backup = ChatDB.backup_and_recreate(path)
        kv = settings.home / "kv"  # the old conversations' KV states go aside with them
        if kv.is_dir():
            kv.rename(kv.with_name(f"kv{backup.name.removeprefix(path.name)}"))
        if report is not None:
            report(f"{exc.message}\nmoved it to {backup}; starting a fresh chat.db")
        return ChatDB(path, clock=clock)


def conversation_exists(db: ChatDB, conversation_id: int) -> bool:
    """False once the conversation was deleted (a worker may outlive it)."""
    try:
        db.conversation(conversation_id)
    except EdgeAIError:
        return False
    return True
