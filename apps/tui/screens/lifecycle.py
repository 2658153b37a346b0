"""The chat screen's model: which one to load at startup, what the screen shows while it loads,
when it is ready or failed, the sampling of a reply, and the KV preparation on opening a
conversation.

Boundary: acting on the screen (status bar, transcript notices, the conversation's recorded
model) as the app's load worker reports; loading itself is the app's (`request_model`). The
preparation runs in a thread worker (group "prepare", exclusive: quick switches cancel the
restores queued before) through `edgeai.chat.kv.prepare`, and reaches the UI only once the
model's lock is released.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from textual.worker import get_current_worker

from edgeai.chat import rag
from edgeai.chat.conversations import NEW_TITLE
from edgeai.chat.history import reply_reserve
from edgeai.chat.kv import kv_file, prepare
from edgeai.chat.store import conversation_exists
from edgeai.chatdb import Conversation
from edgeai.errors import BadInput
from edgeai.runtime.loaded import LoadedModel
from edgeai.types import GenParams

if TYPE_CHECKING:
    from edgeai.tui.screens.chat import ChatScreen


# -- startup -------------------------------------------------------------------------------
def startup_conversation(screen: ChatScreen) -> Conversation:
    """The latest conversation, unless `--system` asks for a new one (an empty new one is reused)."""
    app, db = screen.chat_app, screen.db
    latest = next(iter(db.conversations()), None)
    if app.system is None and latest is not None:
        return latest
    if latest is not None and not db.messages(latest.id) and latest.title == NEW_TITLE:
        return db.update_settings(latest.id, system=app.system)
    return db.create_conversation(NEW_TITLE, system=app.system)


def startup_model(screen: ChatScreen) -> None:
    """The model the command line names, else the conversation's, else the one loaded, else
    the settings' default."""
    app, conv = screen.chat_app, screen.conversation
    explicit = app.cli_model is not None or app.cli_backend is not None
    if explicit:
        request = app.cli_model or app.settings.model
        backend = app.cli_backend or app.settings.backend
    elif conv is not None and conv.model:
        request, backend = conv.model, conv.backend
    elif app.model is not None:
        request, backend = app.model.request, app.model.backend_name
    else:
        request, backend = app.settings.model, app.settings.backend
    assign = conv.id if conv is not None and (explicit or not conv.model) else None
    if app.model is not None and app.model.matches(request, backend):
        model_ready(screen, app.model, assign, announce=False)
    else:
        app.request_model(request, backend, assign)


# -- loading, ready, failed ----------------------------------------------------------------
def model_loading(screen: ChatScreen, request: str, fraction: float | None) -> None:
    done = f" {fraction:.0%}" if fraction is not None else "…"
    screen.status.set(loading=f"{request}{done}")


def model_ready(screen: ChatScreen, model: LoadedModel, assign_to: int | None,
                announce: bool = True) -> None:
    db = screen.db
    if assign_to is not None and conversation_exists(db, assign_to):  # not if deleted
        conv = db.update_settings(assign_to, model=model.request, backend=model.backend_name)
        if screen.conversation is not None and screen.conversation.id == assign_to:
            screen.conversation = conv
    screen.status.set(loading=None, problem=None, model=model.label, backend=model.backend_name,
                      context_window=model.n_ctx, context_used=None, note=None)
    if announce:
        screen.notify(f"{model.label} is ready on {model.backend_name}")
    prepare_context(screen)
    pending, screen.pending_send = screen.pending_send, None
    if pending is not None:
        screen.call_later(screen.send, pending)


def model_failed(screen: ChatScreen, request: str, error: str) -> None:
    model = screen.chat_app.model
    screen.status.set(loading=None, problem=None if model else f"no model: {request} did not load")
    keep = f" Still using {model.label}." if model else (
        " Ctrl+O picks another model; the built-in `echo` model needs no download.")
    screen.transcript.notice(f"Could not load {request}: {error}.{keep}", error=True)
    pending, screen.pending_send = screen.pending_send, None
    if pending is not None and not screen.prompt.text.strip():
        screen.prompt.load_text(pending)  # not sent: it is back in the prompt


def params(screen: ChatScreen, model: LoadedModel) -> GenParams | None:
    """The sampling of the next reply: the model's defaults, the command line's, the
    conversation's own; None (and said) when they do not hold together."""
    from edgeai.rag.context import RAG_TEMPERATURE
    from edgeai.runtime.loader import gen_params

    conv_params = screen.conversation.params if screen.conversation else {}
    chosen = {**screen.chat_app.overrides, **conv_params}
    if rag.collection_of(screen.conversation) and chosen.get("temperature") is None:
        chosen["temperature"] = RAG_TEMPERATURE  # grounded answers (edgeai/rag/context.py)
    try:
        return gen_params(model.spec, chosen)
    except BadInput as exc:
        screen.transcript.notice(f"{exc.message} (fix it with /set or /unset)", error=True)
        return None


# -- the KV cache and the context count of the conversation opened ---------------------------
def prepare_context(screen: ChatScreen) -> None:
    model, conv = screen.chat_app.model, screen.conversation
    if model is not None and conv is not None:
        screen.run_worker(partial(_prepare, screen, model, conv), thread=True, group="prepare",
                          exclusive=True, exit_on_error=False)


def _prepare(screen: ChatScreen, model: LoadedModel, conv: Conversation) -> None:
    worker = get_current_worker()
    kv = kv_file(screen.chat_app.settings.home, screen.db, model.backend, conv.id)
    try:
        restored, used = prepare(model, screen.db, conv, kv, lambda: worker.is_cancelled)
    except Exception:  # only an estimate: never worth a crash
        return
    if worker.is_cancelled:
        return
    try:
        screen.app.call_from_thread(_prepared, screen, conv.id, model, restored, used)
    except RuntimeError:
        pass  # the app has exited


def _prepared(screen: ChatScreen, conversation_id: int, model: LoadedModel, restored: int,
              used: int) -> None:
    if screen.conversation is None or screen.conversation.id != conversation_id:
        return
    chosen = params(screen, model)
    note = f"resumed {restored:,} cached tokens" if restored else None
    screen.status.set(context_used=used, context_window=model.n_ctx, note=note,
                      reserve=reply_reserve(chosen, model.n_ctx) if chosen else 0)
