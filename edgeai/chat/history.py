"""What the model sees of a conversation: its history as messages, and that history fitted to
the context window.

Boundary: stored rows (or messages) in, `Message` lists out; no I/O, no lock. Old turns are
dropped (oldest first, the system prompt kept) when the history no longer fits the window with
room left for the reply; the caller is told how many were dropped. chat.db is never trimmed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from edgeai.chatdb import StoredMessage
from edgeai.errors import ContextOverflow
from edgeai.runtime.base import Backend, PromptTokens
from edgeai.types import GenParams, Message


def history(messages: Iterable[StoredMessage], system: str | None, skip: int | None = None
            ) -> list[Message]:
    """The system prompt, then the user/assistant messages, alternating.

    A failed or empty reply is left out together with the question it answered, and a question
    left without any reply gives way to the next one: two user turns in a row make templates
    such as Gemma's `raise_exception`, and every later message would fail. An interrupted
    reply is kept as far as it got. `skip` is a reply being written now. Images sent with a
    message travel as its `images` (the stored copies), for the turn's image routing."""
    turns: list[Message] = []
    for m in messages:
        if m.id == skip or m.role not in ("user", "assistant"):
            continue
        if m.status == "error" or not (m.content.strip() or m.attachments):
            if m.role == "assistant" and turns and turns[-1].role == "user":
                turns.pop()
            continue
        if turns and turns[-1].role == m.role:
            turns.pop()
        turns.append(Message(m.role, m.content, images=m.images))  # stored copies (#15)
    return ([Message("system", system)] if system else []) + turns


def count_prompt_tokens(backend: Backend) -> Callable[[list[Message]], int]:
    """How many tokens a list of messages takes: exact where the backend renders its own
    template (`PromptTokens`), an estimate otherwise."""
    if isinstance(backend, PromptTokens):
        exact = backend.prompt_tokens
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
