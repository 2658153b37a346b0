"""The chat's side of RAG: a conversation's collection, the context of a reply, its citations.

Boundary: a turn's use of `edgeai.rag.api` and `edgeai.rag.context`; no UI. A reply with RAG
on goes through three steps in `chat.turn.run_turn`: `retrieve` (MiniLM + SQLite, before the
model's lock is taken: it does not use the model; it searches with the question it is given,
never one read back from chat.db), `compose` (lock held: it counts with the model's own
tokenizer, picks the strategy and builds the fenced messages) and `finish` (the written
answer's citations checked against the sources placed). The record `finish` returns is what
chat.db keeps with the reply. Also a conversation's own collection `chat-<id>` (`/attach`) and
the quality model offered for answers from documents.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edgeai.chat.history import count_prompt_tokens
from edgeai.chatdb import ChatDB, Conversation, StoredMessage
from edgeai.config import DEFAULT_MODEL, Settings
from edgeai.errors import BadInput, EdgeAIError
from edgeai.rag.context import (
    FULL_DOCUMENT,
    MARKERS_ONLY_NOTE,
    RETRIEVAL,
    Source,
    build_document_messages,
    build_rag_messages,
    choose_scope,
    markers_only,
    renumber_citations,
    source_to_dict,
    strategy_label,
)
from edgeai.types import Hit, Message

QUALITY_MODEL = "qwen2.5-coder-1.5b-instruct"
TOP_K = 5  # passages retrieved per question (as `rag query`); the budget decides how many are placed
# documents get at least this share of the room left after the reply's reserve: old turns of
# the conversation are dropped first (fit_to_context) rather than the passages
DOCUMENT_SHARE = 0.75
TEMPLATE_SLACK = 32  # the chat template's own tokens around the messages


@dataclass
class RagPlan:
    """One question's retrieval, then (once composed) the strategy and the sources placed."""

    collection: str
    question: str
    hits: list[Hit]
    files: list[str]
    full_text_of: Callable[[str], str | None]
    sizes: dict[str, int] = field(default_factory=dict)  # file -> characters (`api.file_sizes`)
    strategy: str = RETRIEVAL
    sources: list[Source] = field(default_factory=list)
    # the guard's passage checks (set by `turn.prepare` from its hooks): each placed passage
    # comes back as is, flagged (fenced harder, marked in the sources) or not at all (dropped)
    screens: list[Callable[[Source], Source | None]] = field(default_factory=list)

    def record(self, sources: list[Source] | None = None, cited: bool = False) -> dict[str, Any]:
        """What chat.db keeps with the reply and the view shows under it."""
        shown = self.sources if sources is None else sources
        return {"collection": self.collection, "strategy": self.strategy,
                "label": strategy_label(self.strategy, self.sources), "cited": cited,
                "sources": [source_to_dict(s) for s in shown]}


def collection_of(conversation: Conversation | None) -> str | None:
    return (conversation.rag or {}).get("collection") if conversation is not None else None


def chat_collection(conversation_id: int) -> str:
    """The collection `/attach` fills for one conversation."""
    return f"chat-{conversation_id}"


def use_collection(settings: Settings, db: ChatDB, conversation: Conversation, name: str | None,
                   how_to_make: str = "`edgeai rag add NAME PATH` makes one") -> Conversation:
    """Answer this conversation from the collection `name` (None: from no documents). A name
    that is not a collection here is refused, saying which exist (or `how_to_make` one)."""
    if name is not None:
        from edgeai.rag import api

        known = api.list_collections(settings)
        if name not in known:
            have = f"collections here: {', '.join(known)}" if known else \
                f"there are none yet: {how_to_make}"
            raise BadInput(f"no collection named {name!r}", have)
    rag = {**(conversation.rag or {}), "collection": name}
    if name is None:
        rag.pop("collection")
    return db.update_settings(conversation.id, rag=rag)


def claim_chat_collection(settings: Settings, db: ChatDB, conversation: Conversation) -> Conversation:
    """Make `chat-<id>` this conversation's own before `/attach` adds to it. Ids restart at 1
    after `edgeai chat --reset-db`, so a collection of that name this conversation never recorded
    (as `attached` or as its collection) is an earlier chat's: it is removed, so that chat's
    documents cannot answer here. The `attached` mark keeps this chat's own files past `/rag off`."""
    from edgeai.rag.store import delete_collection

    name = chat_collection(conversation.id)
    rag = conversation.rag or {}
    if rag.get("attached") == name:
        return conversation
    if rag.get("collection") != name:
        try:
            delete_collection(settings, name)
        except OSError as exc:
            raise EdgeAIError(f"cannot remove the stale collection {name!r}: {exc}",
                              "delete it with: edgeai rag rm " + name) from None
    return db.update_settings(conversation.id, rag={**rag, "attached": name})


def forget_chat_collection(settings: Settings, conversation_id: int) -> None:
    """Remove what `/attach` indexed for a deleted conversation (a named collection stays)."""
    from edgeai.rag.store import delete_collection

    with contextlib.suppress(OSError):  # unwritable: an orphan file, not a failed delete
        delete_collection(settings, chat_collection(conversation_id))


def last_question(messages: list[StoredMessage], before: int | None = None) -> str | None:
    """The text of the user message a reply answers (the last one before `before`)."""
    for m in reversed(messages):
        if before is not None and m.id >= before:
            continue
        if m.role == "user":
            return m.content
    return None


# -- the three steps of a reply ----------------------------------------------------------
def retrieve(settings: Settings, collection: str, question: str | None, k: int = TOP_K) -> RagPlan:
    """Search the collection (worker thread, no model lock): hits, and the files it holds."""
    from edgeai.rag import api

    if not question or not question.strip():
        raise BadInput("there is no question to search the documents for")

    hits = api.search(settings, collection, question, k=k)
    sizes = api.file_sizes(settings, collection)
    cache: dict[str, str | None] = {}

    def full_text_of(file: str) -> str | None:
        if file not in cache:
            cache[file] = api.document_text(settings, collection, file)
        return cache[file]

    return RagPlan(collection, question, list(hits), list(sizes), full_text_of, sizes)


def compose(plan: RagPlan, messages: list[Message], backend: Any, n_ctx: int, reserve: int
            ) -> list[Message]:
    """The messages to send (model lock held): the user's system prompt and the earlier turns
    as they are, the last question replaced by the fenced documents + the question."""
    system = messages[0].content if messages and messages[0].role == "system" else None
    turns = messages[1:] if system is not None else list(messages)
    earlier = turns[:-1] if turns and turns[-1].role == "user" else turns

    def count_text(text: str) -> int:
        return len(backend.tokenize(text))

    room = n_ctx - reserve - TEMPLATE_SLACK
    used_by_history = count_prompt_tokens(backend)(earlier) if earlier else 0
    budget = max(room - used_by_history, int(room * DOCUMENT_SHARE))
    strategy, scope = choose_scope(plan.question, plan.files, plan.hits, budget, count_text,
                                   plan.full_text_of, system, sizes=plan.sizes)
    if strategy == FULL_DOCUMENT:
        documents = [(f, plan.full_text_of(f) or "") for f in scope]
        out, placed = build_document_messages(plan.question, documents, budget_tokens=budget,
                                              count_tokens=count_text, system=system, history=earlier,
                                              screens=plan.screens)
    else:
        out, placed = build_rag_messages(plan.question, plan.hits, budget_tokens=budget,
                                         count_tokens=count_text, system=system, history=earlier,
                                         screens=plan.screens)
    plan.strategy, plan.sources = strategy, placed
    return out


def finish(plan: RagPlan, text: str) -> tuple[str, dict[str, Any]]:
    """The answer with its citations checked against the passages (`rag.attribution`: kept,
    moved to the passage that holds the claim, narrowed to its lines, or "[?]") and renumbered,
    and the record to keep: the cited sources first, then the other passages placed."""
    from edgeai.rag.attribution import attribute, with_consulted

    checked, narrowed = attribute(text, plan.sources, plan.question, _similarity)
    fixed, cited = renumber_citations(checked, narrowed)
    shown = with_consulted(cited, narrowed)
    if markers_only(fixed):
        fixed = f"{fixed.strip()}\n\n{MARKERS_ONLY_NOTE}"
    return fixed, plan.record(shown, cited=any(s.cited for s in shown))


def _similarity(a: str, b: str) -> float:
    """MiniLM's cosine of two texts: the encoder retrieval already loaded in this process."""
    import numpy as np

    from edgeai.rag import api

    va, vb = (np.asarray(v, dtype=np.float32) for v in api.embedder().embed([a, b]))
    return float(va @ vb / (np.linalg.norm(va) * np.linalg.norm(vb) or 1.0))


# -- the quality model -------------------------------------------------------------------
def is_default_model(model_id: str) -> bool:
    from edgeai.models.catalog import find_entry, parse_id

    try:
        return find_entry(parse_id(model_id)[0]).id == DEFAULT_MODEL
    except (BadInput, ValueError):  # a path, a URL, an unknown name
        return False


def quality_model_installed(settings: Settings) -> bool:
    """The catalog's quality model is on this machine (assembled, or its package installed)."""
    from edgeai.models.catalog import find_entry
    from edgeai.models.resolve import artifact_state

    entry = find_entry(QUALITY_MODEL)
    return any(artifact_state(entry, art, settings) in ("ready", "installed")
               for art in entry.artifacts)
