"""One reply, produced off the UI thread: history from chat.db, trimmed to the window, streamed,
saved while it grows, finished with its statistics, and the KV cache kept for instant resume.

Boundary: runs in a worker thread under the model's lock and reaches the UI only through the
`on_text` callback it is given (the screen wraps it in `call_from_thread`). No Textual here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeai.chat import count_prompt_tokens, fit_to_context
from edgeai.chatdb import ChatDB, Conversation, StoredMessage
from edgeai.errors import EdgeAIError
from edgeai.tui.session import LoadedModel, can_keep_state
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


def history(messages: list[StoredMessage], system: str | None, skip: int | None = None
            ) -> list[Message]:
    """What the model sees: the system prompt, then every kept user/assistant message.
    Failed or empty replies are left out; an interrupted reply is kept as far as it got."""
    head = [Message("system", system)] if system else []
    return head + [Message(m.role, m.content) for m in messages
                   if m.id != skip and m.role in ("user", "assistant") and m.status != "error"
                   and m.content.strip()]


def reserve_for(params: GenParams, n_ctx: int) -> int:
    """Room kept for the reply when the history is trimmed (the same rule as `chat_turn`)."""
    return min(params.max_tokens, n_ctx // 4)


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, EdgeAIError):
        return f"{exc.message}" + (f" ({exc.hint})" if exc.hint else "")
    return f"{type(exc).__name__}: {exc}"


def _stats(final: Chunk | None, model: LoadedModel, dropped: int, stopped: bool) -> dict[str, Any]:
    stats: dict[str, Any] = {"model": model.spec.id, "backend": model.backend_name}
    if final is not None:
        for key in ("prompt_tokens", "completion_tokens", "ttft_s", "prompt_tps", "gen_tps",
                    "peak_mem_mb", "finish_reason"):
            value = getattr(final, key)
            if value is not None:
                stats[key] = value
    if stopped:
        stats["finish_reason"] = "cancelled"
    if dropped:
        stats["dropped"] = dropped
    return stats


def run_reply(model: LoadedModel, db: ChatDB, conversation: Conversation, reply_id: int,
              params: GenParams, should_stop: Callable[[], bool],
              on_text: Callable[[str, str], None], kv_file: Path | None = None) -> Outcome:
    """Stream the reply `reply_id` (already started in the db) to the history before it.

    `should_stop` is polled between chunks; backends yield empty chunks during a prefill, so
    a stop abandons a long prompt too. What arrived is kept (status `interrupted`).
    """
    messages = history(db.messages(conversation.id), conversation.system, skip=reply_id)
    out = Outcome()
    with model.lock:
        try:
            kept, dropped = fit_to_context(messages, count_prompt_tokens(model.backend), model.n_ctx,
                                           reserve_for(params, model.n_ctx))
            stream = model.backend.stream(kept, params)
        except Exception as exc:  # context overflow, a bad template: a message, not a crash
            out.status, out.error = "error", _error_text(exc)
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
            out.error = _error_text(exc)
        finally:
            stream.close()  # abandons a prefill or a decode at once
        if pending[0] or pending[1]:
            on_text(*pending)
        out.text, out.reasoning = "".join(text), "".join(reasoning)
        out.stats = _stats(final, model, dropped, stopped)
        if out.error:
            out.stats["error"] = out.error
            out.status = "interrupted" if out.text else "error"
        elif stopped or final is None:
            out.status = "interrupted"
        db.finish_reply(reply_id, out.text, out.reasoning, status=out.status, stats=out.stats)
        if final is not None and final.prompt_tokens is not None:
            out.context_used = final.prompt_tokens + (final.completion_tokens or 0)
        if kv_file is not None and out.status != "error":
            save_kv(model, kv_file)
    return out


def save_kv(model: LoadedModel, path: Path) -> None:
    """Keep the cache on disk for instant resume (lock held by the caller)."""
    if not can_keep_state(model.backend):
        return
    try:
        model.backend.save_state(path)
    except (OSError, EdgeAIError):
        pass  # only a speed-up: without the file the history is simply re-processed


def prepare(model: LoadedModel, db: ChatDB, conversation: Conversation, kv_file: Path | None
            ) -> tuple[int, int]:
    """On opening a conversation: restore its KV cache if there is one for this model, and
    count the tokens its history takes. Returns (tokens restored, context used)."""
    messages = history(db.messages(conversation.id), conversation.system)
    restored = 0
    with model.lock:
        if (kv_file is not None and can_keep_state(model.backend) and kv_file.is_file()
                and model.kv_owner != conversation.id):
            try:
                restored = model.backend.restore_state(kv_file)
            except (OSError, EdgeAIError):
                restored = 0
            if restored:
                model.kv_owner = conversation.id
        used = count_prompt_tokens(model.backend)(messages) if messages else 0
    return restored, used
