"""A conversation and one chat turn over any backend: history, context trimming, the reply.

UI-free: `edgeai chat --plain` drives `chat_turn` from a terminal loop; the Textual app (which
keeps its history in chat.db) borrows `fit_to_context`, `count_prompt_tokens` and `reply_reserve`.
Old turns are dropped (oldest first, the system prompt kept) when the history no longer fits
the context window with room left for the reply; the caller is told how many were dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from edgeai.errors import ContextOverflow
from edgeai.runtime.base import Backend
from edgeai.types import Chunk, GenParams, Message


@dataclass
class Conversation:
    system: str | None = None
    turns: list[Message] = field(default_factory=list)

    def messages(self) -> list[Message]:
        head = [Message("system", self.system)] if self.system else []
        return head + self.turns

    def clear(self) -> None:
        self.turns.clear()


def count_prompt_tokens(backend: Backend) -> Callable[[list[Message]], int]:
    exact = getattr(backend, "prompt_tokens", None)
    if exact is not None:
        return lambda messages: len(exact(messages))
    # an estimate for backends without a template of their own (remote): one tokenize call over
    # the joined text, not one per message (each is an HTTP request there), plus a few per turn
    return lambda messages: len(backend.tokenize("\n".join(m.content for m in messages))) + 4 * len(messages)


def reply_reserve(params: GenParams, n_ctx: int) -> int:
    """Room kept for the reply when old turns are trimmed."""
    return min(params.max_tokens, n_ctx // 4)


def fit_to_context(messages: list[Message], count: Callable[[list[Message]], int], n_ctx: int,
                   reserve: int) -> tuple[list[Message], int]:
    """Drop the oldest non-system messages until prompt + reserve fits; return (kept, dropped)."""
    system = [m for m in messages[:1] if m.role == "system"]
    rest = messages[len(system):]
    dropped = 0
    while len(rest) > 1 and count(system + rest) + reserve > n_ctx:
        # drop a whole exchange where possible so the history never starts with a reply
        step = 2 if len(rest) > 2 and rest[0].role == "user" and rest[1].role == "assistant" else 1
        rest = rest[step:]
        dropped += step
    tokens = count(system + rest)
    if tokens >= n_ctx:
        raise ContextOverflow(tokens, n_ctx, "the message alone does not fit: shorten it")
    return system + rest, dropped


@dataclass
class Turn:
    """The reply being produced; `text` holds what arrived so far, even if interrupted."""

    text: str = ""
    reasoning: str = ""
    final: Chunk | None = None
    dropped: int = 0


def chat_turn(backend: Backend, conversation: Conversation, user_text: str, params: GenParams,
              n_ctx: int, turn: Turn) -> Iterator[Chunk]:
    """Stream the reply to `user_text`; the exchange joins the history even if cut short."""
    conversation.turns.append(Message("user", user_text))
    try:
        messages, turn.dropped = fit_to_context(conversation.messages(), count_prompt_tokens(backend),
                                                n_ctx, reply_reserve(params, n_ctx))
    except ContextOverflow:
        conversation.turns.pop()
        raise
    if turn.dropped:
        del conversation.turns[: turn.dropped]
    try:
        for chunk in backend.stream(messages, params):
            turn.text += chunk.text
            turn.reasoning += chunk.reasoning
            if chunk.finish_reason:
                turn.final = chunk
            yield chunk
    finally:
        conversation.turns.append(Message("assistant", turn.text))
