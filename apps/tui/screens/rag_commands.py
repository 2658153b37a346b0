"""The chat's RAG commands: `/rag on NAME`, `/rag off`, `/rag`, `/attach PATH`, `/sources`, and
the offer of the quality model for answers from documents.

Boundary: acting on the screen and chat.db (`Conversation.rag`); indexing runs in a thread
worker (group "attach") that reports progress and per-file errors by posting to the UI, never
waiting on it. Retrieval for a reply is `edgeai.chat.rag`, called by the engine's turn.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeai.chat import rag as ragturn
from edgeai.chat.store import conversation_exists
from edgeai.errors import BadInput, EdgeAIError, describe
from edgeai.tui.screens.confirm import ConfirmScreen

if TYPE_CHECKING:
    from edgeai.tui.screens.chat import ChatScreen
    from edgeai.tui.widgets.message import MessageView

PROGRESS_EVERY_S = 0.2
QUALITY_QUESTION = "Switch to the quality model for answers from your documents?"


def set_collection(screen: ChatScreen, collection: str | None) -> None:
    conv = screen.conversation
    if conv is None:
        return
    screen.conversation = ragturn.use_collection(screen.chat_app.settings, screen.db, conv, collection,
                                                 "/attach PATH indexes files for this conversation")
    screen.show_rag_state()


async def rag(screen: ChatScreen, arg: str) -> None:
    words = arg.split()
    conv = screen.conversation
    if conv is None:
        return
    if not words:
        screen.transcript.notice(describe_state(screen))
    elif words[0].lower() == "off" and len(words) == 1:
        set_collection(screen, None)
        screen.transcript.notice("RAG is off: answers no longer use documents")
    elif words[0].lower() == "on" and len(words) == 2:
        name = words[1]
        set_collection(screen, name)
        screen.transcript.notice(f"RAG is on: answers use the collection {name!r}")
        offer_quality_model(screen)
    else:
        raise BadInput("usage: /rag on NAME, /rag off, or /rag to show the state")


def describe_state(screen: ChatScreen) -> str:
    from edgeai.rag import api

    settings = screen.chat_app.settings
    name = ragturn.collection_of(screen.conversation)
    known = api.list_collections(settings)
    have = f" Collections: {', '.join(known)}." if known else ""
    if name is None:
        return f"RAG is off (/rag on NAME attaches a collection, /attach PATH indexes files).{have}"
    try:
        info = api.stats(settings, name)
        size = f" ({info['files']} files, {info['chunks']} passages)"
    except EdgeAIError as exc:
        size = f" ({exc.message})"
    return f"RAG is on: collection {name!r}{size}; /rag off turns it off.{have}"


async def attach(screen: ChatScreen, arg: str) -> None:
    conv = screen.conversation
    if conv is None:
        return
    try:
        words = shlex.split(arg)
    except ValueError as exc:
        raise BadInput(f"cannot read the paths: {exc}") from None
    if not words:
        raise BadInput("usage: /attach PATH... (files or folders, indexed for this conversation)")
    paths = [Path(w).expanduser().resolve() for w in words]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise BadInput(f"no such file or folder: {', '.join(missing)}")
    if any(w.group == "attach" and not w.is_finished for w in screen.workers):
        raise BadInput("files are still being indexed: wait for that to finish")
    screen.conversation = conv = ragturn.claim_chat_collection(screen.chat_app.settings, screen.db, conv)
    name = ragturn.chat_collection(conv.id)
    screen.status.set(note=f"indexing {len(paths)} path{'s' if len(paths) > 1 else ''}…")
    screen.run_worker(lambda: _ingest(screen, conv.id, name, paths), thread=True, group="attach",
                      exit_on_error=False)


class _Cancelled(Exception):
    """The app is closing: the ingest stops at its next progress report."""


def _ingest(screen: ChatScreen, conversation_id: int, name: str, paths: list[Path]) -> None:
    """Index `paths` into the conversation's collection (worker thread): progress and the
    outcome reach the UI by `call_from_thread`, which never holds a lock here."""
    from textual.worker import get_current_worker

    from edgeai.rag import api

    worker = get_current_worker()
    last = [0.0]

    def post(callback: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        try:
            screen.app.call_from_thread(callback, *args, **kwargs)
        except RuntimeError:
            pass  # the app has exited

    def progress(state: Any) -> None:
        if worker.is_cancelled:  # quitting: stop between batches (each file commits whole)
            raise _Cancelled
        now = time.monotonic()
        if now - last[0] >= PROGRESS_EVERY_S:
            last[0] = now
            post(screen.status.set, note=progress_text(state))

    try:
        report = api.ingest(screen.chat_app.settings, name, paths, progress=progress)
    except _Cancelled:
        return
    except Exception as exc:  # the whole batch failed: a message, the chat goes on
        post(_attach_failed, screen, describe(exc))
        return
    post(_attached, screen, conversation_id, name, report)


def progress_text(state: Any) -> str:
    """The status bar's line while indexing: 'indexing 2/5 files · 140 chunks · 35/s · notes.pdf'."""
    text = f"indexing {state.files_done}/{state.files_total} files · {state.chunks} chunks"
    if state.chunks:
        text += f" · {state.chunks_per_s:.0f}/s"
    return text + (f" · {Path(state.current).name}" if state.current else "")


def _attach_failed(screen: ChatScreen, error: str) -> None:
    screen.status.set(note=None)
    screen.transcript.notice(f"/attach: {error}", error=True)


def _attached(screen: ChatScreen, conversation_id: int, name: str, report: Any) -> None:
    screen.status.set(note=None)
    errors = list(getattr(report, "errors", []) or [])
    summary = (f"indexed into {name!r}: {report.added} added, {report.updated} updated, "
               f"{report.unchanged} unchanged, {report.chunks} chunks")
    if errors:
        summary += f", {len(errors)} skipped"
    if screen.conversation is None or screen.conversation.id != conversation_id:
        screen.notify(summary)  # switched away meanwhile: the collection is still that chat's
        _remember(screen, conversation_id, name)
        return
    screen.transcript.notice(summary)
    for path, message in errors:  # the message names the file ("a.txt: looks binary, skipped")
        said = message if Path(path).name in message else f"{path}: {message}"
        screen.transcript.notice(f"skipped {said}", error=True)
    if report.added + report.updated + report.unchanged == 0:
        return  # nothing indexed: RAG stays as it was
    set_collection(screen, name)
    screen.transcript.notice(f"RAG is on: answers use the files attached to this chat ({name})")
    offer_quality_model(screen)


def _remember(screen: ChatScreen, conversation_id: int, name: str) -> None:
    if conversation_exists(screen.db, conversation_id):
        conv = screen.db.conversation(conversation_id)
        screen.db.update_settings(conversation_id, rag={**conv.rag, "collection": name})


async def sources(screen: ChatScreen, arg: str) -> None:
    screen.action_toggle_sources()


def open_sources(screen: ChatScreen, view: MessageView | None = None, number: int | None = None) -> None:
    """Show a reply's sources (default: the last reply that has some) in the side panel, the
    list focused: Up/Down go through them, Esc closes."""
    from edgeai.tui.widgets.sources import SourcesPanel

    view = view or next((v for v in reversed(screen.transcript.views()) if v.sources), None)
    if view is None or not view.sources or screen.conversation is None:
        screen.notify("No reply with sources in this conversation yet", severity="warning")
        return
    question = ragturn.last_question(screen.db.messages(screen.conversation.id), before=view.message_id)
    panel = screen.query_one(SourcesPanel)
    panel.show(view.sources, view.rag.get("label") or "Sources", question or "", number, view.message_id)
    panel.display = True
    panel.focus_list()


# -- the quality model -------------------------------------------------------------------
def wants_quality_offer(screen: ChatScreen) -> bool:
    """RAG on, the default model loaded, the quality model installed, not asked before here."""
    conv, model = screen.conversation, screen.chat_app.model
    if conv is None or model is None or ragturn.collection_of(conv) is None:
        return False
    if conv.rag.get("quality_asked") or not ragturn.is_default_model(model.spec.id):
        return False
    return ragturn.quality_model_installed(screen.chat_app.settings)


def offer_quality_model(screen: ChatScreen, pending: str | None = None) -> bool:
    """Ask once per conversation; True when the question is on screen. A `pending` message is
    sent once the answer is known: after the quality model has loaded on yes."""
    if not wants_quality_offer(screen):
        return False
    conv = screen.conversation
    screen.conversation = screen.db.update_settings(conv.id, rag={**conv.rag, "quality_asked": True})

    async def answered(yes: bool | None) -> None:
        if yes:
            screen.pending_send = pending
            screen.chat_app.request_model(ragturn.QUALITY_MODEL, None, conv.id)
            screen.transcript.notice("loading the quality model" + (
                ": your question is sent once it is ready" if pending else ""))
        elif pending is not None:
            await screen.send(pending)

    screen.app.push_screen(ConfirmScreen(QUALITY_QUESTION, yes="Switch", variant="primary"), answered)
    return True
