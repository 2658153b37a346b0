"""One reply, produced off the UI thread: history from chat.db, trimmed to the window, streamed,
saved while it grows, finished with its statistics, and the KV cache kept for instant resume.

Boundary: runs in a worker thread under the model's lock and reaches the UI only through the
callbacks it is given. They are called with the lock held, so they must never wait for the UI
(the screen posts messages): a UI that waits for the lock (closing the model) would otherwise
deadlock with them. No Textual here.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeai.chat import count_prompt_tokens, fit_to_context, reply_reserve
from edgeai.chatdb import ChatDB, Conversation, StoredMessage
from edgeai.errors import EdgeAIError, describe
from edgeai.runtime.base import chunk_stats
from edgeai.tui import rag as ragturn
from edgeai.tui.session import LoadedModel, can_keep_state, prune_kv
from edgeai.tui.store import conversation_exists
from edgeai.types import Chunk, GenParams, Message

SAVE_EVERY_S = 0.5  # a kill -9 loses at most this much of a reply
PUSH_EVERY_S = 0.03  # batch tokens: one UI update per token would queue behind a fast backend


@dataclass
class Outcome:
    text: str = ""
    reasoning: str = ""
    status: str = "done"  # done | interrupted | error (chatdb's vocabulary)
    stats: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    context_used: int | None = None
    rag: dict[str, Any] | None = None  # strategy and sources, when the reply used documents


def history(messages: list[StoredMessage], system: str | None, skip: int | None = None
            ) -> list[Message]:
    """What the model sees: the system prompt, then the user/assistant messages, alternating.

    A failed or empty reply is left out together with the question it answered, and a question
    left without any reply gives way to the next one: two user turns in a row make templates
    such as Gemma's `raise_exception`, and every later message would fail. An interrupted
    reply is kept as far as it got. `skip` is the reply being written now."""
    turns: list[Message] = []
    for m in messages:
        if m.id == skip or m.role not in ("user", "assistant"):
            continue
        if m.status == "error" or not m.content.strip():
            if m.role == "assistant" and turns and turns[-1].role == "user":
                turns.pop()
            continue
        if turns and turns[-1].role == m.role:
            turns.pop()
        turns.append(Message(m.role, m.content))
    return ([Message("system", system)] if system else []) + turns



def _stats(final: Chunk | None, model: LoadedModel, dropped: int, stopped: bool) -> dict[str, Any]:
    stats: dict[str, Any] = {"model": model.spec.id, "backend": model.backend_name}
    stats.update({k: v for k, v in chunk_stats(final).items() if v is not None})
    if stopped:
        stats["finish_reason"] = "cancelled"
    if dropped:
        stats["dropped"] = dropped
    return stats


def run_reply(model: LoadedModel, db: ChatDB, conversation: Conversation, reply_id: int,
              params: GenParams, should_stop: Callable[[], bool],
              on_text: Callable[[str, str], None], kv_file: Path | None = None, *,
              on_outcome: Callable[[Outcome], None] | None = None,
              rag: ragturn.RagPlan | None = None,
              on_context: Callable[[dict[str, Any]], None] | None = None) -> Outcome:
    """Stream the reply `reply_id` (already started in the db) to the history before it.

    `should_stop` is polled between chunks; backends yield empty chunks during a prefill, so
    a stop abandons a long prompt too. What arrived is kept (status `interrupted`).
    `on_outcome` hears the outcome once it is in chat.db and before the KV state is saved: the
    save can take seconds, and the user should not see "generating…" meanwhile. The save
    still holds the lock (the backend is busy until it ends).
    With `rag` (a retrieval done before), the question goes out with its documents fenced
    (`rag.compose`); `on_context` hears the strategy and sources before the first token, and
    the finished text has its citations checked and renumbered (`rag.finish`).
    """
    messages = history(db.messages(conversation.id), conversation.system, skip=reply_id)
    with model.lock:
        out = _stream(model, db, conversation, reply_id, params, messages, should_stop, on_text,
                      rag, on_context)
        if on_outcome is not None:
            on_outcome(out)
        if kv_file is not None and out.status != "error":
            keep_kv(model, db, conversation.id, kv_file)
    return out


def _stream(model: LoadedModel, db: ChatDB, conversation: Conversation, reply_id: int,
            params: GenParams, messages: list[Message], should_stop: Callable[[], bool],
            on_text: Callable[[str, str], None], rag: ragturn.RagPlan | None = None,
            on_context: Callable[[dict[str, Any]], None] | None = None) -> Outcome:
    """The reply itself, lock held by the caller: streamed, saved as it grows, finished."""
    out = Outcome()
    try:
        if rag is not None:
            messages = ragturn.compose(rag, messages, model.backend, model.n_ctx,
                                       reply_reserve(params, model.n_ctx))
            out.rag = rag.record()
            db.save_rag(reply_id, out.rag)  # a killed reply keeps its sources too
            if on_context is not None:
                on_context(out.rag)
        kept, dropped = fit_to_context(messages, count_prompt_tokens(model.backend), model.n_ctx,
                                       reply_reserve(params, model.n_ctx))
        stream = model.backend.stream(kept, params)
    except Exception as exc:  # context overflow, a bad template: a message, not a crash
        out.status, out.error = "error", describe(exc)
        out.stats = {"error": out.error}
        db.finish_reply(reply_id, "", status="error", stats=out.stats)
        return out
    model.kv_owner = conversation.id  # from here on the cache holds this conversation
    text: list[str] = []
    reasoning: list[str] = []
    pending = ["", ""]
    final: Chunk | None = None
    last_save = last_push = time.monotonic()
    stopped = False
    try:
        for chunk in stream:
            if should_stop():
                stopped = True
                break
            text.append(chunk.text)
            reasoning.append(chunk.reasoning)
            pending[0] += chunk.text
            pending[1] += chunk.reasoning
            final = chunk if chunk.finish_reason else final
            now = time.monotonic()
            if (pending[0] or pending[1]) and now - last_push >= PUSH_EVERY_S:
                on_text(*pending)
                pending, last_push = ["", ""], now
            if now - last_save >= SAVE_EVERY_S:
                db.save_partial(reply_id, "".join(text), "".join(reasoning))
                last_save = now
    except Exception as exc:  # a backend failing mid-reply: keep what arrived
        out.error = describe(exc)
    finally:
        stream.close()  # abandons a prefill or a decode at once
    if pending[0] or pending[1]:
        on_text(*pending)
    out.text, out.reasoning = "".join(text), "".join(reasoning)
    if rag is not None:
        out.text, out.rag = ragturn.finish(rag, out.text)
    out.stats = _stats(final, model, dropped, stopped)
    if out.error:
        out.stats["error"] = out.error
        out.status = "interrupted" if out.text else "error"
    elif stopped or final is None:
        out.status = "interrupted"
    db.finish_reply(reply_id, out.text, out.reasoning, status=out.status, stats=out.stats,
                    rag=out.rag)
    if final is not None and final.prompt_tokens is not None:
        out.context_used = final.prompt_tokens + (final.completion_tokens or 0)
    return out


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
    if not can_keep_state(model.backend):
        return
    try:
        model.backend.save_state(path)
    except (OSError, EdgeAIError):
        pass  # only a speed-up: without the file the history is simply re-processed


def prepare(model: LoadedModel, db: ChatDB, conversation: Conversation, kv_file: Path | None,
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
        if (kv_file is not None and can_keep_state(model.backend) and kv_file.is_file()
                and model.kv_owner != conversation.id):
            try:
                restored = model.backend.restore_state(kv_file)
            except (OSError, EdgeAIError):
                restored = 0
            if restored:
                model.kv_owner = conversation.id
                with contextlib.suppress(OSError):  # used now: the size cap drops the least used
                    os.utime(kv_file)
        used = count_prompt_tokens(model.backend)(messages) if messages else 0
    return restored, used
