"""One chat turn, the same for every surface (the Textual app, `edgeai chat --plain`, the
server): the user's text in as an argument, the reply streamed out, and every chat.db write of
the turn.

Two phases, because the app must show the reply's row before its worker starts:

    begin_turn   (the caller's thread; the app's UI thread: quick SQLite writes only)
        edit-resend / regenerate: delete_from(edit_from)
        the earlier history read once                    (db.messages)
        the user's message added; a new chat titled from it; the model recorded if it has none
        start_reply                                      (the empty `streaming` row)
        history(earlier + the user's message) in memory: the user's text is never read back
    run_turn     (a worker thread in the app; the REPL's own thread)
        prepare:  hooks       the seam for the input guard and for media (they see an `Ask`)
                  rag.retrieve  with the turn's question, before the lock: it does not use the model
        route_images: images stay for a model that sees, else become a fenced description (OCR,
                      faces, facts; vision/route.py); the labels ("OCR · 42 words") go with the reply
        -- model lock --
        compose_prompt: rag.compose -> fit_to_context;  save_rag;  backend.stream
            every 0.5 s save_partial; `should_stop` polled between chunks
        rag.finish -> finish_reply; on_outcome
        keep_kv               after the outcome: the save can take seconds
        -- lock released --

Worker discipline: `on_text`, `on_context` and `on_outcome` are called with the model's lock
held, so they must never wait for the UI (the app posts messages): a UI that waits for the
lock (closing the model) would otherwise deadlock with them. A stop (`should_stop`: Esc) and
Ctrl-C (KeyboardInterrupt, re-raised once the reply is saved) both keep what arrived, as
`interrupted`; a failure before the first token is an `error` row with its reason, not a crash.

The server has no Turn of its own (its requests carry their history) but makes the same prompt
through the same two steps: `prepare` (hooks, retrieval) and `compose_prompt` (RAG context,
fitting), then `rag.finish` on the answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from edgeai.chat import rag
from edgeai.chat.conversations import NEW_TITLE, title_from
from edgeai.chat.history import count_prompt_tokens, fit_to_context, history, reply_reserve
from edgeai.chat.kv import keep_kv, kv_file
from edgeai.chatdb import ChatDB, Conversation, StoredMessage
from edgeai.config import Settings
from edgeai.errors import describe
from edgeai.rag.context import Source
from edgeai.runtime.base import chunk_stats, final_chunk
from edgeai.runtime.loaded import LoadedModel
from edgeai.types import Chunk, GenParams, Message
from edgeai.vision.route import image_part, route_images  # light: the image stack loads on use

SAVE_EVERY_S = 0.5  # a kill -9 loses at most this much of a reply
PUSH_EVERY_S = 0.03  # batch tokens: one UI update per token would queue behind a fast backend
RAG_HINT = " (/rag off answers without documents)"


@dataclass
class Outcome:
    text: str = ""
    reasoning: str = ""
    status: str = "done"  # done | interrupted | error (chatdb's vocabulary)
    stats: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    context_used: int | None = None
    rag: dict[str, Any] | None = None  # strategy and sources, when the reply used documents
    images: list[str] = field(default_factory=list)  # how each image was used: "VLM", "OCR · 42 words"


@dataclass(frozen=True)
class Turn:
    """A turn begun: what chat.db holds for it now, and what the model will be asked."""

    db: ChatDB
    conversation: Conversation  # as it is after begin_turn's writes
    reply: StoredMessage  # the `streaming` row run_turn fills
    messages: list[Message]  # system prompt, earlier turns, the question last (in memory)
    question: str | None  # what retrieval searches with: the user's text, or on regenerate the last one
    user: StoredMessage | None = None  # the user's message as written; None on regenerate
    attachments: tuple[Path, ...] = ()  # images/audio sent with the text: carried for a media hook
    surface: str = "tui"  # who asked: "tui", "plain" or "serve" (hooks and the audit log say so)

    @property
    def collection(self) -> str | None:
        """The RAG collection the reply is answered from, if any."""
        return rag.collection_of(self.conversation)

    def ask(self) -> Ask:
        return Ask(self.surface, self.question, self.attachments)


@dataclass(frozen=True)
class Ask:
    """What a hook sees of a turn, whichever surface asked."""

    surface: str  # "tui", "plain" or "serve"
    question: str | None  # the user's text this turn answers
    attachments: tuple[Path, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)  # per-request switches (the server's)


# The seam between the history and the model: the input guard and media (speech to text,
# images for a VLM, using `ask.attachments`) plug in here. A hook gets the ask and the messages
# about to be sent and returns the messages to send; raising fails the reply with its message.
# Hooks run before retrieval and without the model's lock.
Hook = Callable[[Ask, list[Message]], list[Message]]
HOOKS: tuple[Hook, ...] = ()


@runtime_checkable
class PassageScreen(Protocol):
    """A hook that also checks each retrieved passage before it is placed (the guard): the
    source as is, marked `flagged`, or None to drop it."""

    def screen(self, ask: Ask, source: Source) -> Source | None: ...


def default_hooks(settings: Settings, model: LoadedModel | None = None) -> tuple[Hook, ...]:
    """The hooks a turn runs when its caller names none: the guard's, for these settings
    (`[guard]` in config.toml; none when it is off)."""
    from edgeai.guard import hooks

    return hooks(settings, model)


def prepare(ask: Ask, messages: list[Message], settings: Settings, collection: str | None,
            hooks: Sequence[Hook] = HOOKS) -> tuple[list[Message], rag.RagPlan | None]:
    """Before the model (no lock): the hooks, then the retrieval when a collection answers.
    Raises what a hook or the search raised: the turn fails with that message. Hooks that are
    also a `PassageScreen` check the retrieved passages when they are composed."""
    for hook in hooks:
        messages = hook(ask, messages)
    plan = rag.retrieve(settings, collection, ask.question) if collection else None
    if plan is not None:
        plan.screens = [partial(hook.screen, ask) for hook in hooks if isinstance(hook, PassageScreen)]
    return messages, plan


def compose_prompt(messages: list[Message], plan: rag.RagPlan | None, backend: Any, n_ctx: int,
                   params: GenParams) -> tuple[list[Message], int]:
    """The messages the model is sent (model lock held where the backend needs one): the RAG
    context placed, then the history fitted to the window. Returns (messages, turns dropped)."""
    reserve = reply_reserve(params, n_ctx)
    if plan is not None:
        # RAG rewrites the last question from the plan; a described image stays in front of it
        last = messages[-1] if messages and messages[-1].role == "user" else None
        images = image_part(last.content) if last is not None else None
        messages = rag.compose(plan, messages, backend, n_ctx, reserve)
        if images:
            messages[-1] = replace(messages[-1], content=f"{images}\n\n{messages[-1].content}")
    return fit_to_context(messages, count_prompt_tokens(backend), n_ctx, reserve)


def begin_turn(db: ChatDB, conversation: Conversation, text: str | None, model: LoadedModel, *,
               edit_from: int | None = None, attachments: Sequence[Path | str | Mapping[str, Any]] = (),
               surface: str = "tui") -> Turn:
    """Write the start of a turn (quick: the app calls this on its UI thread).

    `text` is the user's message; None regenerates: the reply answers the last question of the
    stored history. `edit_from` first deletes that message and every later one (edit-resend:
    the edited message; regenerate: the reply it replaces). `attachments` are records made by
    `edgeai.chat.attachments` (an image's stored copy), kept with the user's message; a bare path
    reaches the hooks only and is not stored."""
    if edit_from is not None:
        db.delete_from(edit_from)
    earlier = db.messages(conversation.id)  # the only read of the history in a turn
    user = None
    if text is not None:
        user = db.add_message(conversation.id, "user", text,
                              attachments=[a for a in attachments if isinstance(a, Mapping)])
        if conversation.title == NEW_TITLE:
            db.rename(conversation.id, title_from(text))
    if conversation.model is None:  # the model it started with becomes the conversation's
        db.update_settings(conversation.id, model=model.request, backend=model.backend_name)
    # the model is recorded at once: a reply cut by kill -9 still says which model wrote it
    reply = db.start_reply(conversation.id, stats={"model": model.spec.id, "backend": model.backend_name})
    conversation = db.conversation(conversation.id)
    asked = [*earlier, user] if user is not None else earlier
    question = text if text is not None else rag.last_question(earlier)
    return Turn(db, conversation, reply, history(asked, conversation.system), question, user,
                tuple(Path(a["path"] if isinstance(a, Mapping) else a) for a in attachments), surface)


def run_turn(turn: Turn, model: LoadedModel, params: GenParams, settings: Settings, *,
             should_stop: Callable[[], bool] = lambda: False,
             on_text: Callable[[str, str], None] = lambda text, reasoning: None,
             on_note: Callable[[str], None] | None = None,
             on_context: Callable[[dict[str, Any]], None] | None = None,
             on_outcome: Callable[[Outcome], None] | None = None,
             hooks: Sequence[Hook] | None = None, save_state: bool = True) -> Outcome:
    """Produce the reply of a begun turn and keep it in chat.db.

    `should_stop` is polled between chunks; backends yield empty chunks during a prefill, so a
    stop abandons a long prompt too. `on_text` hears (text, reasoning) in batches. `on_note`
    hears what happens before the model starts ("searching notes…"); with RAG on,
    `on_context` hears the strategy and sources before the first token, and the finished text
    has its citations checked and renumbered. `on_outcome` hears the outcome once it is in
    chat.db and before the KV state is saved (`save_state`, under the same lock). `hooks`
    None runs `default_hooks` (the guard)."""
    out: Outcome | None = None
    images: list[str] = []

    def report(outcome: Outcome) -> Outcome:
        if on_outcome is not None:
            on_outcome(outcome)
        return outcome

    try:
        if turn.collection and on_note is not None:
            on_note(f"searching {turn.collection}…")
        checker = None
        try:
            if hooks is None:  # the guard: its input hooks now, its output check on the reply
                hooks = default_hooks(settings, model)
                checker = output_checker(settings, turn.surface, turn.conversation.system,
                                         params.response_format)
            messages, plan = prepare(turn.ask(), turn.messages, settings, turn.collection, hooks)
            if any(m.images for m in messages):  # after the hooks: the guard reads the user's own words
                if on_note is not None:
                    on_note("reading the image…")
                messages, images = route_images(messages, model.backend.capabilities)
        except Exception as exc:  # a hook refusing the turn, a deleted collection: said, not raised
            out = _failed(turn, describe(exc) + (RAG_HINT if turn.collection else ""))
            return report(out)
        with model.lock:
            out, keyboard = _stream(turn, model, params, messages, plan, should_stop, on_text,
                                    on_context, checker, images)
            report(out)
            if keyboard:
                raise KeyboardInterrupt
            kv = kv_file(settings.home, turn.db, model.backend, turn.conversation.id)
            if save_state and kv is not None and out.status != "error":
                keep_kv(model, turn.db, turn.conversation.id, kv)
        return out
    except KeyboardInterrupt:
        if out is None:  # Ctrl-C before the stream started: the row must not stay `streaming`
            turn.db.finish_reply(turn.reply.id, "", status="interrupted",
                                 stats={"finish_reason": "cancelled"})
        raise


def _failed(turn: Turn, error: str) -> Outcome:
    """A reply that never started: an `error` row with its reason."""
    out = Outcome(status="error", error=error, stats={"error": error})
    turn.db.finish_reply(turn.reply.id, "", status="error", stats=out.stats)
    return out


def _stats(final: Chunk | None, model: LoadedModel, dropped: int, stopped: bool,
           seen: _Arrivals) -> dict[str, Any]:
    stats: dict[str, Any] = {"model": model.spec.id, "backend": model.backend_name}
    stats.update({k: v for k, v in chunk_stats(final).items() if v is not None})
    if final is None:  # stopped before the last chunk: what arrived still tells its story
        stats.update({k: v for k, v in seen.stats().items() if v is not None})
    if stopped:
        stats["finish_reason"] = "cancelled"
    if dropped:
        stats["dropped"] = dropped
    return stats


@dataclass
class _Arrivals:
    """The tokens a stream delivered and when: a stopped reply's statistics (the backend's own
    final chunk never comes)."""

    start: float = field(default_factory=time.perf_counter)
    tokens: int = 0
    first: float | None = None
    last: float | None = None

    def add(self, chunk: Chunk) -> None:
        if chunk.token_ids:
            self.tokens += len(chunk.token_ids)
            self.last = time.perf_counter()
            self.first = self.first or self.last

    def stats(self) -> dict[str, Any]:
        """The timings every backend's final chunk gives, from what arrived (no prompt count)."""
        cut = final_chunk(finish_reason="cancelled", prompt_tokens=None, completion_tokens=self.tokens,
                          start=self.start, first=self.first, last=self.last)
        return {k: getattr(cut, k) for k in ("completion_tokens", "ttft_s", "gen_tps")}


def output_checker(settings: Settings, surface: str, system: str | None, schema: dict | None,
                   options: Mapping[str, Any] | None = None) -> Callable[[str], Any]:
    """The guard's check of a finished reply (PII, a leaked system prompt, the JSON schema), for
    every surface; `options` are a request's layer switches (the server's)."""
    from edgeai.guard import check_output

    return partial(check_output, settings=settings, surface=surface, system_prompt=system, schema=schema,
                   options=options)


def _stream(turn: Turn, model: LoadedModel, params: GenParams, messages: list[Message],
            plan: rag.RagPlan | None, should_stop: Callable[[], bool],
            on_text: Callable[[str, str], None],
            on_context: Callable[[dict[str, Any]], None] | None,
            checker: Callable[[str], Any] | None = None,
            images: Sequence[str] = ()) -> tuple[Outcome, bool]:
    """The reply itself, lock held by the caller: streamed, saved as it grows, finished.
    Returns the outcome and whether a KeyboardInterrupt cut it (for the caller to re-raise)."""
    db, reply_id = turn.db, turn.reply.id
    out = Outcome()
    try:
        kept, dropped = compose_prompt(messages, plan, model.backend, model.n_ctx, params)
        if plan is not None:
            out.rag = plan.record()
            db.save_rag(reply_id, out.rag)  # a killed reply keeps its sources too
            if on_context is not None:
                on_context(out.rag)
        seen = _Arrivals()
        stream = model.backend.stream(kept, params)
    except Exception as exc:  # context overflow, a bad template: a message, not a crash
        out.status, out.error = "error", describe(exc)
        out.stats = {"error": out.error}
        db.finish_reply(reply_id, "", status="error", stats=out.stats)  # e.g. a question too long
        return out, False
    model.kv_owner = turn.conversation.id  # from here on the cache holds this conversation
    text: list[str] = []
    reasoning: list[str] = []
    pending = ["", ""]
    final: Chunk | None = None
    last_save = last_push = time.monotonic()
    stopped = keyboard = False
    try:
        for chunk in stream:
            if should_stop():
                stopped = True
                break
            seen.add(chunk)
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
    except KeyboardInterrupt:  # Ctrl-C in the REPL: kept as a stop, re-raised once saved
        stopped = keyboard = True
    except Exception as exc:  # a backend failing mid-reply: keep what arrived
        out.error = describe(exc)
    finally:
        stream.close()  # abandons a prefill or a decode at once
    if (pending[0] or pending[1]) and not keyboard:
        try:
            on_text(*pending)
        except KeyboardInterrupt:
            keyboard = True
    out.text, out.reasoning = "".join(text), "".join(reasoning)
    if plan is not None:
        out.text, out.rag = rag.finish(plan, out.text)
    out.stats = _stats(final, model, dropped, stopped, seen)
    if images:  # kept with the reply, so a surface shows how each image was used after a restart too
        out.images = list(images)
        out.stats["images"] = out.images
    if checker is not None and out.text:  # the stored (and finally shown) text is the checked one
        checked = checker(out.text)
        out.text = checked.text
        if checked.findings:
            out.stats["guard"] = [f"{e.layer}:{e.rule}:{e.action}" for e in checked.findings]
    if out.error:
        out.stats["error"] = out.error
        out.status = "interrupted" if out.text else "error"
    elif stopped or final is None:
        out.status = "interrupted"
    db.finish_reply(reply_id, out.text, out.reasoning, status=out.status, stats=out.stats,
                    rag=out.rag)
    if final is not None and final.prompt_tokens is not None:
        out.context_used = final.prompt_tokens + (final.completion_tokens or 0)
    return out, keyboard
