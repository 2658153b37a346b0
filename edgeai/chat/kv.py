"""A conversation's KV cache on disk, for instant resume: where it lives, the size cap on all
of them, saving it after a turn and restoring it when a conversation is opened (`prepare`).

Boundary: `<home>/kv/<chat.db uid>-<id>.kv` files and the backend's optional `KVState` ability, always under
the model's lock (taken here by `prepare`, held by the caller of `keep_kv` / `save_kv`). A
backend without the ability re-processes the history instead; any failure here loses only that
speed-up, never a message.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

from edgeai.chat.history import count_prompt_tokens, history
from edgeai.chat.store import conversation_exists
from edgeai.chatdb import ChatDB, Conversation
from edgeai.errors import EdgeAIError
from edgeai.runtime.base import Backend, KVState
from edgeai.runtime.loaded import LoadedModel

# kv/ keeps one state per conversation, growing with its history (a long chat on a 7B model
# can take hundreds of MB): beyond this the least recently used go
KV_CAP_BYTES = 2 * 1024**3


def kv_path(home: Path, db: ChatDB, conversation_id: int) -> Path:
    """`<home>/kv/<chat.db's uid>-<id>.kv`: a row id alone restarts at 1 in a fresh chat.db."""
    return home / "kv" / f"{db.uid}-{conversation_id}.kv"


def kv_file(home: Path, db: ChatDB, backend: Backend, conversation_id: int) -> Path | None:
    """Where this conversation's state is kept, or None when there is none to keep: the backend
    cannot save one, or the conversation lives in an in-memory chat.db (`chat --plain`), which
    keeps nothing on disk."""
    if not db.persistent or not isinstance(backend, KVState):
        return None
    return kv_path(home, db, conversation_id)


def prune_kv(folder: Path, cap_bytes: int | None = None) -> list[Path]:
    """Hold the KV states in `folder` to `cap_bytes` (default KV_CAP_BYTES), least recently used
    out first: a state is used when it is saved or restored (a restore touches it). Returns
    what was removed. Only a speed-up is lost: that history is re-processed when reopened."""
    cap = KV_CAP_BYTES if cap_bytes is None else cap_bytes
    states = []
    for path in folder.glob("*.kv"):
        try:
            states.append((path.stat(), path))
        except OSError:
            continue  # deleted with its conversation meanwhile
    states.sort(key=lambda state: state[0].st_mtime, reverse=True)
    total, removed = 0, []
    for stat, path in states:
        total += stat.st_size
        if total > cap:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def keep_kv(model: LoadedModel, db: ChatDB, conversation_id: int, path: Path) -> None:
    """Save the cache for the conversation (lock held by the caller), unless it was deleted:
    its file would be an orphan. Then hold kv/ to its size cap."""
    if not conversation_exists(db, conversation_id):
        return
    save_kv(model, path)
    if not conversation_exists(db, conversation_id):  # deleted while the state was written
        path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # kv/ unreadable: the states stay, nothing else is lost
        prune_kv(path.parent)


def save_kv(model: LoadedModel, path: Path) -> None:
    """Keep the cache on disk for instant resume (lock held by the caller)."""
    if not isinstance(model.backend, KVState):
        return
    try:
        model.backend.save_state(path)
    except (OSError, EdgeAIError):
        pass  # only a speed-up: without the file the history is simply re-processed


def prepare(model: LoadedModel, db: ChatDB, conversation: Conversation, kv: Path | None,
            cancelled: Callable[[], bool] = lambda: False) -> tuple[int, int]:
    """On opening a conversation: restore its KV cache if there is one for this model, and
    count the tokens its history takes. Returns (tokens restored, context used); (0, 0) when
    `cancelled` says so once the lock is ours (the user has switched on since: restoring
    would replace the cache of the conversation now open)."""
    messages = history(db.messages(conversation.id), conversation.system)
    restored = 0
    with model.lock:
        if cancelled():
            return 0, 0
        backend = model.backend
        if (kv is not None and isinstance(backend, KVState) and kv.is_file()
                and model.kv_owner != conversation.id):
            try:
                restored = backend.restore_state(kv)
            except (OSError, EdgeAIError):
                restored = 0
            if restored:
                model.kv_owner = conversation.id
                with contextlib.suppress(OSError):  # used now: the size cap drops the least used
                    os.utime(kv)
        used = count_prompt_tokens(backend)(messages) if messages else 0
    return restored, used
