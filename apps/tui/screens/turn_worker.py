"""The chat screen's side of a turn: begin it (UI thread), run it in the turn worker, and land
what the worker posts in the reply's view.

Boundary: glue between `ChatScreen` and the engine's `begin_turn` / `run_turn`
(`edgeai.chat.turn`), which make every chat.db write of the turn. The worker (a thread, group
"turn") reaches the UI only by posting `ReplyText` / `ReplyContext` / `ReplyDone`, never
waiting for them, because it holds the model's lock while it streams. The view of a reply in
flight stays on the screen (`screen.replies`); the worker never sees a widget.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from textual.message import Message
from textual.worker import get_current_worker

from edgeai.chat.turn import Outcome, begin_turn, run_turn
from edgeai.runtime.loaded import LoadedModel
from edgeai.tui.screens.reply import Job, ReplyContext, ReplyDone, ReplyText
from edgeai.tui.widgets.message import MessageView
from edgeai.types import GenParams

if TYPE_CHECKING:
    from edgeai.tui.screens.chat import ChatScreen


async def begin(screen: ChatScreen, model: LoadedModel, params: GenParams, text: str | None,
                edit_from: int | None = None, attachments: Sequence[dict[str, Any]] = ()) -> None:
    """Write the turn's start (`begin_turn`), show its messages, start the worker. `text` None
    regenerates; `edit_from` is the first message replaced (edit-resend, regenerate);
    `attachments` are the images the message carries (records from `/image`)."""
    assert screen.conversation is not None
    turn = begin_turn(screen.db, screen.conversation, text, model, edit_from=edit_from,
                      attachments=attachments)
    screen.conversation = turn.conversation
    if edit_from is not None:
        await screen.transcript.remove_from(edit_from)
    if turn.user is not None:
        await screen.transcript.add(MessageView(turn.user, "You"))
    view = MessageView(turn.reply, model.label, screen.show_stats)
    await screen.transcript.add(view)
    screen.replies[turn.reply.id] = view
    screen.job = job = Job(model, turn, params, threading.Event())
    screen.set_generating(True)
    screen.refresh_sidebar()
    screen.run_worker(partial(_work, screen, job), thread=True, group="turn", exit_on_error=False)


def _work(screen: ChatScreen, job: Job) -> None:
    """The turn worker: the whole reply off the UI thread, told to the UI by posted messages."""
    worker = get_current_worker()
    reported: list[Outcome] = []

    def post(message: Message) -> None:
        try:
            posted = screen.post_message(message)
        except RuntimeError:  # the event loop has closed
            posted = False
        if not posted:
            job.stop.set()  # the app is shutting down: stop and keep what was written

    def report(outcome: Outcome) -> None:
        reported.append(outcome)
        post(ReplyDone(job, outcome))

    try:
        run_turn(job.turn, job.model, job.params, screen.chat_app.settings,
                 should_stop=lambda: job.stop.is_set() or worker.is_cancelled,
                 on_text=lambda text, reasoning: post(ReplyText(job, text, reasoning)),
                 on_note=lambda note: post(ReplyContext(job, None, note)),
                 on_context=lambda record: post(ReplyContext(job, record)),
                 on_outcome=report)
    except Exception as exc:  # e.g. chat.db closed under us at exit
        if not reported:
            report(Outcome(status="error", error=f"{type(exc).__name__}: {exc}"))


# -- what the worker posted, on the UI thread ---------------------------------------------
def show_context(screen: ChatScreen, event: ReplyContext) -> None:
    view = screen.replies.get(event.job.reply_id)
    if view is None:
        return
    if event.note is not None:
        view.set_header_note(event.note)
    if event.rag is not None:
        view.set_rag(event.rag)


async def show_text(screen: ChatScreen, event: ReplyText) -> None:
    view = screen.replies.get(event.job.reply_id)
    if view is not None:
        await view.write(event.text, event.reasoning)  # a view switched away: ignored


async def finish(screen: ChatScreen, event: ReplyDone) -> None:
    job, outcome = event.job, event.outcome
    if screen.job is job:
        screen.job = None  # first: whatever fails below, the user can send again
        screen.set_generating(False)
    current = screen.conversation is not None and job.conversation.id == screen.conversation.id
    done = (outcome.text, outcome.reasoning, outcome.status, outcome.stats, outcome.rag)
    first = screen.replies.pop(job.reply_id, None)
    if first is not None:
        await first.finish(*done)
    # reopened meanwhile: the reply is shown by a new view, which needs finishing too
    view = screen.transcript.view_for(job.reply_id) if current else None
    if view is not None and view is not first:
        await view.finish(*done)
    if current:
        _show_stats(screen, job, outcome)
    screen.refresh_sidebar()


def _show_stats(screen: ChatScreen, job: Job, outcome: Outcome) -> None:
    stats = outcome.stats
    screen.status.set(ttft_s=stats.get("ttft_s"), gen_tps=stats.get("gen_tps"),
                      peak_mem_mb=stats.get("peak_mem_mb"), note=None)
    if outcome.context_used is not None:
        screen.status.set(context_used=outcome.context_used)
    else:  # stopped or failed: count what the history now holds
        screen.prepare_context()
    if stats.get("dropped"):
        screen.transcript.notice(f"{stats['dropped']} old messages were left out so the "
                                 f"conversation fits the {job.model.n_ctx:,}-token window.")
