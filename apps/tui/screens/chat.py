"""The chat screen: sidebar, transcript, prompt and status bar, and the flow of a turn.

Boundary: UI state and user intent. The UI thread only posts and updates widgets; a reply is
produced by `turn.run_reply` in a thread worker (group "turn") under the model's lock, and
streams back as `ReplyText` / `ReplyDone` messages: posted, never waited for, so the worker
never waits for the UI while it holds the lock. Slash commands live in `screens/commands.py`
(RAG's in `screens/rag_commands.py`); the model itself is owned by the app
(`EdgeChatApp.request_model`). With a collection attached, the turn worker retrieves first
(`ReplyContext` shows the strategy and sources) and the sources panel opens a reply's citations.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from textual import on, work
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, Footer
from textual.worker import get_current_worker

from edgeai.chat import reply_reserve
from edgeai.chatdb import ChatDB, Conversation
from edgeai.errors import BadInput, describe
from edgeai.tui import rag as ragturn
from edgeai.tui.screens import commands, rag_commands
from edgeai.tui.screens.confirm import ConfirmScreen
from edgeai.tui.screens.models import ModelPicker, catalog_rows
from edgeai.tui.screens.rename import RenameScreen
from edgeai.tui.screens.reply import Job, ReplyContext, ReplyDone, ReplyText
from edgeai.tui.session import LoadedModel, can_keep_state, kv_path
from edgeai.tui.store import conversation_exists
from edgeai.tui.turn import Outcome, prepare, run_reply
from edgeai.tui.widgets.message import MessageView
from edgeai.tui.widgets.prompt import Composer, PromptInput
from edgeai.tui.widgets.sidebar import Sidebar
from edgeai.tui.widgets.sources import SourcesPanel
from edgeai.tui.widgets.status import StatusBar
from edgeai.tui.widgets.transcript import Transcript
from edgeai.types import GenParams

if TYPE_CHECKING:
    from edgeai.tui.app import EdgeChatApp

NEW_TITLE = "New chat"
EDIT_TITLE = "editing: Enter resends (later messages are replaced) · Esc cancels"


class ChatScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "stop", "Stop"),
        Binding("escape", "cancel_edit", "Cancel edit"),
        Binding("ctrl+n", "new_chat", "New"),
        Binding("ctrl+o", "pick_model", "Model"),
        Binding("ctrl+b,f3", "toggle_sidebar", "Chats"),  # F3: ctrl+b is tmux's prefix
        Binding("ctrl+f", "search", "Search", show=False),
        Binding("f2", "rename", "Rename"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.conversation: Conversation | None = None
        self.job: Job | None = None
        self.editing: int | None = None  # id of the user message being edited
        self.show_stats = False
        self.pending_send: str | None = None  # sent once the model being loaded is ready

    @property
    def chat_app(self) -> EdgeChatApp:
        return self.app  # type: ignore[return-value]

    @property
    def db(self) -> ChatDB:
        return self.chat_app.db

    @property
    def prompt(self) -> PromptInput:
        return self.query_one(PromptInput)

    @property
    def transcript(self) -> Transcript:
        return self.query_one(Transcript)

    @property
    def status(self) -> StatusBar:
        return self.query_one(StatusBar)

    def compose(self):
        with Horizontal(id="main"):
            yield Sidebar(id="sidebar")
            with Vertical(id="chat"):
                yield Transcript(id="transcript")
                yield Composer(id="composer")
            yield SourcesPanel(id="sources")
        yield StatusBar(live_stats=self.chat_app.live_stats, id="status")
        yield Footer()

    async def on_mount(self) -> None:
        await self.open_conversation(self._startup_conversation().id, follow_model=False)
        self.prompt.focus()
        # after the first frame: importing llama_cpp and loading weights must not delay it
        self.call_after_refresh(self._startup_model)

    def _startup_conversation(self) -> Conversation:
        app = self.chat_app
        latest = next(iter(self.db.conversations()), None)
        if app.system is None and latest is not None:
            return latest
        if latest is not None and not self.db.messages(latest.id) and latest.title == NEW_TITLE:
            return self.db.update_settings(latest.id, system=app.system)
        return self.db.create_conversation(NEW_TITLE, system=app.system)

    def _startup_model(self) -> None:
        app, conv = self.chat_app, self.conversation
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
            self.model_ready(app.model, assign, announce=False)
        else:
            app.request_model(request, backend, assign)

    # -- conversations -------------------------------------------------------------------
    async def open_conversation(self, conversation_id: int, follow_model: bool = True) -> None:
        if self.job is not None:
            self.action_stop()  # switching away stops the reply; what it wrote is kept
        self.cancel_edit()
        switched = self.conversation is None or self.conversation.id != conversation_id  # not /clear
        conv = self.db.conversation(conversation_id)
        self.conversation = conv
        self.status.set(ttft_s=None, gen_tps=None, note=None, context_used=None,  # the last reply's
                        rag=ragturn.collection_of(conv))
        self.query_one(SourcesPanel).display = False  # it showed another conversation's sources
        messages = self.db.messages(conv.id)
        model = self.chat_app.model
        await self.transcript.show(messages, model.label if model else "assistant", self.show_stats,
                                   conv.system)
        self.prompt.prompts = [m.content for m in messages if m.role == "user"]
        self.refresh_sidebar()
        if not follow_model:
            return  # startup: _startup_model decides which model, then prepares
        if conv.model and (model is None or not model.matches(conv.model, conv.backend)):
            self.chat_app.request_model(conv.model, conv.backend, None)
            return
        if conv.model and switched:  # its model is loaded: a load for another chat must not replace it
            self.chat_app.cancel_load()
        if model is not None:
            self.prepare_context()

    def refresh_sidebar(self) -> None:
        sidebar = self.query_one(Sidebar)
        query = sidebar.search_text.strip()
        current = self.conversation.id if self.conversation else None
        sidebar.show(self.db.conversations(search=query or None), current, query)

    async def new_conversation(self, title: str = NEW_TITLE) -> None:
        model = self.chat_app.model
        conv = self.db.create_conversation(
            title, model=model.request if model else None, backend=model.backend_name if model else None)
        await self.open_conversation(conv.id)
        self.prompt.focus()

    def request_delete(self, conversation_id: int) -> None:
        title = self.db.conversation(conversation_id).title

        async def answered(yes: bool | None) -> None:
            if yes:
                await self.delete_conversation(conversation_id)

        self.app.push_screen(ConfirmScreen(f"Delete “{title}” and all its messages?"), answered)

    async def delete_conversation(self, conversation_id: int) -> None:
        if self.job is not None and self.job.conversation.id == conversation_id:
            self.action_stop()
        self.db.delete(conversation_id)
        kv_path(self.chat_app.settings.home, conversation_id).unlink(missing_ok=True)
        ragturn.forget_chat_collection(self.chat_app.settings, conversation_id)  # what /attach indexed
        if self.conversation is not None and self.conversation.id == conversation_id:
            remaining = self.db.conversations()
            if remaining:
                await self.open_conversation(remaining[0].id)
            else:
                await self.new_conversation()
        else:
            self.refresh_sidebar()
        self.notify("Conversation deleted")

    def rename(self, title: str) -> None:
        if self.conversation is None:
            return
        self.db.rename(self.conversation.id, title)
        self.conversation = self.db.conversation(self.conversation.id)
        self.refresh_sidebar()

    # -- the model -----------------------------------------------------------------------
    def model_loading(self, request: str, fraction: float | None) -> None:
        done = f" {fraction:.0%}" if fraction is not None else "…"
        self.status.set(loading=f"{request}{done}")

    def model_ready(self, model: LoadedModel, assign_to: int | None, announce: bool = True) -> None:
        if assign_to is not None and conversation_exists(self.db, assign_to):  # not if deleted
            conv = self.db.update_settings(assign_to, model=model.request, backend=model.backend_name)
            if self.conversation is not None and self.conversation.id == assign_to:
                self.conversation = conv
        self.status.set(loading=None, problem=None, model=model.label, backend=model.backend_name,
                        context_window=model.n_ctx, context_used=None, note=None)
        if announce:
            self.notify(f"{model.label} is ready on {model.backend_name}")
        self.prepare_context()
        pending, self.pending_send = self.pending_send, None
        if pending is not None:
            self.call_later(self.send, pending)

    def model_failed(self, request: str, error: str) -> None:
        model = self.chat_app.model
        self.status.set(loading=None, problem=None if model else f"no model: {request} did not load")
        keep = f" Still using {model.label}." if model else (
            " Ctrl+O picks another model; the built-in `echo` model needs no download.")
        self.transcript.notice(f"Could not load {request}: {error}.{keep}", error=True)
        pending, self.pending_send = self.pending_send, None
        if pending is not None and not self.prompt.text.strip():
            self.prompt.load_text(pending)  # not sent: it is back in the prompt

    def params(self, model: LoadedModel) -> GenParams | None:
        from edgeai.rag.context import RAG_TEMPERATURE
        from edgeai.runtime.loader import gen_params

        conv_params = self.conversation.params if self.conversation else {}
        chosen = {**self.chat_app.overrides, **conv_params}
        if ragturn.collection_of(self.conversation) and chosen.get("temperature") is None:
            chosen["temperature"] = RAG_TEMPERATURE  # grounded answers (edgeai/rag/context.py)
        try:
            return gen_params(model.spec, chosen)
        except BadInput as exc:
            self.transcript.notice(f"{exc.message} (fix it with /set or /unset)", error=True)
            return None

    def prepare_context(self) -> None:
        model, conv = self.chat_app.model, self.conversation
        if model is not None and conv is not None:
            self._prepare_worker(model, conv)

    # exclusive: quick switches cancel the restores queued before, so only the last one runs
    @work(thread=True, group="prepare", exclusive=True, exit_on_error=False)
    def _prepare_worker(self, model: LoadedModel, conv: Conversation) -> None:
        worker = get_current_worker()
        kv = kv_path(self.chat_app.settings.home, conv.id) if can_keep_state(model.backend) else None
        try:
            restored, used = prepare(model, self.db, conv, kv, lambda: worker.is_cancelled)
        except Exception:  # only an estimate: never worth a crash
            return
        if worker.is_cancelled:
            return
        try:
            self.app.call_from_thread(self._prepared, conv.id, model, restored, used)
        except RuntimeError:
            pass  # the app has exited

    def _prepared(self, conversation_id: int, model: LoadedModel, restored: int, used: int) -> None:
        if self.conversation is None or self.conversation.id != conversation_id:
            return
        params = self.params(model)
        note = f"resumed {restored:,} cached tokens" if restored else None
        self.status.set(context_used=used, context_window=model.n_ctx, note=note,
                        reserve=reply_reserve(params, model.n_ctx) if params else 0)

    # -- a turn --------------------------------------------------------------------------
    @on(PromptInput.Submitted)
    async def _submitted(self, event: PromptInput.Submitted) -> None:
        text = event.text
        command = commands.parse(text.strip())
        if command is not None and self.editing is None:
            self.prompt.clear()
            await commands.run(self, *command)
            return
        await self.send(text)

    async def send(self, text: str) -> None:
        model = self.chat_app.model
        if self.job is not None:
            self.notify("A reply is still being written: Esc stops it", severity="warning")
            return
        if model is None or self.conversation is None:
            self.transcript.notice("No model is loaded yet: wait for it, or Ctrl+O to pick one.",
                                   error=True)
            return
        params = self.params(model)
        if params is None:
            return
        if self.editing is None and rag_commands.offer_quality_model(self, pending=text):
            self.prompt.clear()  # sent once the question is answered
            return
        self.prompt.clear()
        self.prompt.prompts.append(text)
        if self.editing is not None:
            self.db.delete_from(self.editing)
            await self.transcript.remove_from(self.editing)
            self.cancel_edit()
        conv = self.conversation
        user = self.db.add_message(conv.id, "user", text)
        if conv.title == NEW_TITLE:
            self.db.rename(conv.id, _title_from(text))
            self.conversation = self.db.conversation(conv.id)
        await self.transcript.add(MessageView(user, "You"))
        await self.start_reply(model, params)

    async def start_reply(self, model: LoadedModel, params: GenParams) -> None:
        conv = self.conversation
        assert conv is not None
        if conv.model is None:
            conv = self.db.update_settings(conv.id, model=model.request, backend=model.backend_name)
            self.conversation = conv
        reply = self.db.start_reply(conv.id)
        view = MessageView(reply, model.label, self.show_stats)
        await self.transcript.add(view)
        self.job = Job(model, conv, reply.id, params, view, threading.Event(),
                       ragturn.collection_of(conv))
        self._set_generating(True)
        self.refresh_sidebar()
        self._turn_worker(self.job)

    @work(thread=True, group="turn", exit_on_error=False)
    def _turn_worker(self, job: Job) -> None:
        worker = get_current_worker()
        reported: list[Outcome] = []

        def post(message: Message) -> None:
            try:
                posted = self.post_message(message)
            except RuntimeError:  # the event loop has closed
                posted = False
            if not posted:
                job.stop.set()  # the app is shutting down: stop and keep what was written

        def report(outcome: Outcome) -> None:
            reported.append(outcome)
            post(ReplyDone(job, outcome))

        kv = kv_path(self.chat_app.settings.home, job.conversation.id) \
            if can_keep_state(job.model.backend) else None
        try:
            plan = self._retrieve(job, post) if job.collection else None
            if job.collection and plan is None:
                return
            run_reply(job.model, self.db, job.conversation, job.reply_id, job.params,
                      lambda: job.stop.is_set() or worker.is_cancelled,
                      lambda text, reasoning: post(ReplyText(job, text, reasoning)), kv,
                      on_outcome=report, rag=plan,
                      on_context=lambda record: post(ReplyContext(job, record)))
        except Exception as exc:  # e.g. chat.db closed under us at exit
            if not reported:
                report(Outcome(status="error", error=f"{type(exc).__name__}: {exc}"))

    def _retrieve(self, job: Job, post) -> ragturn.RagPlan | None:
        """Search the conversation's collection (worker thread, before the model's lock). A
        failure fails the reply with its reason; None then."""
        post(ReplyContext(job, None, f"searching {job.collection}…"))
        try:
            return ragturn.retrieve_for_reply(self.chat_app.settings, self.db, job.conversation.id,
                                              job.reply_id, job.collection)
        except Exception as exc:  # a deleted collection, a missing embedder: said, not raised
            error = f"{describe(exc)} (/rag off answers without documents)"
            self.db.finish_reply(job.reply_id, "", status="error", stats={"error": error})
            post(ReplyDone(job, Outcome(status="error", error=error, stats={"error": error})))
            return None

    @on(ReplyContext)
    def _reply_context(self, event: ReplyContext) -> None:
        if event.note is not None:
            event.job.view.set_header_note(event.note)
        if event.rag is not None:
            event.job.view.set_rag(event.rag)

    @on(ReplyText)
    async def _reply_text(self, event: ReplyText) -> None:
        await event.job.view.write(event.text, event.reasoning)  # a view switched away: ignored

    @on(ReplyDone)
    async def _turn_done(self, event: ReplyDone) -> None:
        job, outcome = event.job, event.outcome
        if self.job is job:
            self.job = None  # first: whatever fails below, the user can send again
            self._set_generating(False)
        current = self.conversation is not None and job.conversation.id == self.conversation.id
        done = (outcome.text, outcome.reasoning, outcome.status, outcome.stats, outcome.rag)
        await job.view.finish(*done)
        # reopened meanwhile: the reply is shown by a new view, which needs finishing too
        view = self.transcript.view_for(job.reply_id) if current else None
        if view is not None and view is not job.view:
            await view.finish(*done)
        if current:
            self._show_turn_stats(job, outcome)
        self.refresh_sidebar()

    def _show_turn_stats(self, job: Job, outcome: Outcome) -> None:
        stats = outcome.stats
        self.status.set(ttft_s=stats.get("ttft_s"), gen_tps=stats.get("gen_tps"),
                        peak_mem_mb=stats.get("peak_mem_mb"), note=None)
        if outcome.context_used is not None:
            self.status.set(context_used=outcome.context_used)
        else:  # stopped or failed: count what the history now holds
            self.prepare_context()
        if stats.get("dropped"):
            self.transcript.notice(f"{stats['dropped']} old messages were left out so the "
                                   f"conversation fits the {job.model.n_ctx:,}-token window.")

    def _set_generating(self, generating: bool) -> None:
        self.query_one(Composer).set_class(generating, "-generating")
        self.status.set(generating=generating)
        self.refresh_bindings()

    async def regenerate(self, view: MessageView) -> None:
        model = self.chat_app.model
        if self.job is not None or model is None:
            self.notify("Wait for the reply to finish (Esc stops it)" if model else "No model loaded",
                        severity="warning")
            return
        params = self.params(model)
        if params is None:
            return
        self.db.delete_from(view.message_id)
        await self.transcript.remove_from(view.message_id)
        await self.start_reply(model, params)

    def start_edit(self, view: MessageView) -> None:
        if self.job is not None:
            self.notify("Wait for the reply to finish (Esc stops it)", severity="warning")
            return
        self.editing = view.message_id
        self.prompt.load_text(view.content)
        self.prompt.move_cursor(self.prompt.document.end)
        self.prompt.border_title = EDIT_TITLE
        self.prompt.focus()
        self.refresh_bindings()

    def cancel_edit(self) -> None:
        if self.editing is not None:
            self.editing = None
            self.prompt.clear()
            self.prompt.border_title = None
            self.refresh_bindings()

    # -- events and keys -----------------------------------------------------------------
    @on(MessageView.Action)
    async def _message_action(self, event: MessageView.Action) -> None:
        view = event.view
        if event.action == "copy":
            self.copy(view.content, "message")
        elif event.action == "copy_code":
            block = view.next_code_block()
            if block is None:
                self.notify("This reply has no code block", severity="warning")
            else:
                number, count, code = block
                self.copy(code, f"code block {number} of {count}")
        elif event.action == "edit":
            self.start_edit(view)
        elif event.action == "regenerate":
            await self.regenerate(view)
        elif event.action == "sources":
            self.open_sources(view)
        elif event.action.startswith("source "):
            self.open_sources(view, int(event.action.split()[1]))

    # -- sources -------------------------------------------------------------------------
    def show_rag_state(self) -> None:
        self.status.set(rag=ragturn.collection_of(self.conversation))

    def open_sources(self, view: MessageView | None = None, number: int | None = None) -> None:
        rag_commands.open_sources(self, view, number)

    def action_toggle_sources(self) -> None:
        panel = self.query_one(SourcesPanel)
        if panel.display:
            panel.action_close()
        else:
            self.open_sources()

    @on(SourcesPanel.Closed)
    def _sources_closed(self) -> None:
        self.prompt.focus()

    def copy(self, text: str, what: str) -> None:
        self.app.copy_to_clipboard(text)
        self.notify(f"Copied {what} ({len(text):,} characters)")

    @on(Sidebar.Selected)
    async def _selected(self, event: Sidebar.Selected) -> None:
        if self.conversation is None or event.conversation_id != self.conversation.id:
            await self.open_conversation(event.conversation_id)
        self.prompt.focus()

    @on(Sidebar.DeleteRequested)
    def _delete_requested(self, event: Sidebar.DeleteRequested) -> None:
        self.request_delete(event.conversation_id)

    @on(Sidebar.SearchChanged)
    def _search_changed(self) -> None:
        self.refresh_sidebar()

    @on(Button.Pressed, "#stop")
    def _stop_pressed(self) -> None:
        self.action_stop()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop":
            return self.job is not None
        if action == "cancel_edit":
            return self.job is None and self.editing is not None
        return True

    def action_stop(self) -> None:
        if self.job is not None:
            self.job.stop.set()
            # the view shown now: a reopened conversation shows the reply in a new one
            view = self.transcript.view_for(self.job.reply_id) or self.job.view
            view.set_header_note("stopping…")

    def action_cancel_edit(self) -> None:
        self.cancel_edit()

    async def action_new_chat(self) -> None:
        await self.new_conversation()

    def action_pick_model(self) -> None:
        model = self.chat_app.model
        current = model.request if model else None

        def picked(request: str | None) -> None:
            if request:
                self.chat_app.request_model(request, None,
                                            self.conversation.id if self.conversation else None)

        rows = catalog_rows(self.chat_app.settings, current)
        self.app.push_screen(ModelPicker(rows, current), picked)

    def action_toggle_sidebar(self) -> None:
        sidebar = self.query_one(Sidebar)
        sidebar.display = not sidebar.display
        if not sidebar.display:
            self.prompt.focus()

    def action_search(self, text: str | None = None) -> None:
        sidebar = self.query_one(Sidebar)
        sidebar.display = True
        sidebar.focus_search(text)

    def action_rename(self) -> None:
        if self.conversation is None:
            return

        def renamed(title: str | None) -> None:
            if title:
                self.rename(title)

        self.app.push_screen(RenameScreen(self.conversation.title), renamed)

    def action_toggle_stats(self) -> None:
        self.show_stats = not self.show_stats
        for view in self.transcript.views():
            view.set_stats_visible(self.show_stats)


def _title_from(text: str) -> str:
    line = " ".join(text.strip().splitlines()[0].split()) if text.strip() else NEW_TITLE
    return line if len(line) <= 48 else line[:47] + "…"
