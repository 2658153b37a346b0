"""The chat screen: sidebar, transcript, prompt and status bar, and what the user asks of them.

Boundary: UI state and user intent. The UI thread only posts and updates widgets. A reply is
the engine's turn (`edgeai.chat.turn`), begun and run by `screens/turn_worker.py` in a thread
worker (group "turn") under the model's lock; it streams back as `ReplyText` / `ReplyDone`
messages, posted and never waited for. The model's states and the KV preparation on opening a
conversation are `screens/lifecycle.py`; the model itself is owned by the app
(`EdgeChatApp.request_model`). Slash commands live in `screens/commands.py` (RAG's in
`screens/rag_commands.py`); the sources panel opens a reply's citations. Speech and images
(`/image`, a pasted image path, `/audio`, push-to-talk, hands-free, read-aloud) are
`screens/media.py`: the images waiting for the next message are `pending`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from textual import on
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, Footer

from edgeai.chat import rag
from edgeai.chat.conversations import NEW_TITLE, delete_conversation
from edgeai.chatdb import ChatDB, Conversation
from edgeai.runtime.loaded import LoadedModel
from edgeai.tui import slash
from edgeai.tui.screens import commands, lifecycle, media, peers, rag_commands, turn_worker
from edgeai.tui.screens.confirm import ConfirmScreen
from edgeai.tui.screens.models import ModelPicker, catalog_rows
from edgeai.tui.screens.rename import RenameScreen
from edgeai.tui.screens.reply import Job, ReplyContext, ReplyDone, ReplyText
from edgeai.tui.widgets.attachments import AttachmentBar
from edgeai.tui.widgets.message import MessageView
from edgeai.tui.widgets.prompt import Composer, PromptInput
from edgeai.tui.widgets.sidebar import Sidebar
from edgeai.tui.widgets.sources import SourcesPanel
from edgeai.tui.widgets.status import StatusBar
from edgeai.tui.widgets.transcript import Transcript
from edgeai.types import GenParams

if TYPE_CHECKING:
    from edgeai.tui.app import EdgeChatApp

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
        Binding("ctrl+t,f4", "talk", "Talk"),  # push-to-talk: press to record, again to stop
    ]

    def __init__(self) -> None:
        super().__init__()
        self.conversation: Conversation | None = None
        self.job: Job | None = None
        self.replies: dict[int, MessageView] = {}  # reply id -> the view it streams into
        self.editing: int | None = None  # id of the user message being edited
        self.show_stats = False
        self.pending_send: str | None = None  # sent once the model being loaded is ready
        self.peer_version: int | None = None  # chat.db's data_version when another window's writes were shown
        self.listed: list[tuple[int, str]] = []  # the sidebar's (id, title) rows as drawn
        self.pending: list[dict] = []  # images attached to the next message (screens/media.py)
        self.recording: media.Recording | None = None  # push-to-talk or hands-free in progress
        self.hands_free = False
        self.read_aloud = False
        self.speaker: media.Speaker | None = None  # the reply being read aloud
        self.send_timer = None  # hands-free: sends the prompt after a pause

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
        await self.open_conversation(lifecycle.startup_conversation(self).id, follow_model=False)
        peers.watch(self)  # another window on this data dir (screens/peers.py)
        self.prompt.focus()
        # after the first frame: importing llama_cpp and loading weights must not delay it
        self.call_after_refresh(lifecycle.startup_model, self)

    # -- conversations -------------------------------------------------------------------
    async def open_conversation(self, conversation_id: int, follow_model: bool = True) -> None:
        if self.job is not None:
            self.action_stop()  # switching away stops the reply; what it wrote is kept
        self.cancel_edit()
        switched = self.conversation is None or self.conversation.id != conversation_id  # not /clear
        conv = self.db.conversation(conversation_id)
        self.conversation = conv
        self.status.set(ttft_s=None, gen_tps=None, note=None, context_used=None,  # the last reply's
                        rag=rag.collection_of(conv))
        self.query_one(SourcesPanel).display = False  # it showed another conversation's sources
        messages = self.db.messages(conv.id)
        model = self.chat_app.model
        await self.transcript.show(messages, model.label if model else "assistant", self.show_stats,
                                   conv.system)
        self.prompt.prompts = [m.content for m in messages if m.role == "user"]
        self.refresh_sidebar()
        if not follow_model:
            return  # startup: lifecycle.startup_model decides which model, then prepares
        if conv.model and (model is None or not model.matches(conv.model, conv.backend)):
            self.chat_app.request_model(conv.model, conv.backend, None)
            return
        if conv.model and switched:  # its model is loaded: a load for another chat must not replace it
            self.chat_app.cancel_load()
        if model is not None:
            self.prepare_context()

    def sidebar_query(self) -> str:
        return self.query_one(Sidebar).search_text.strip()

    def refresh_sidebar(self, conversations: list[Conversation] | None = None) -> None:
        """Redraw the chat list (`conversations`: the search's rows, when already read)."""
        query = self.sidebar_query()
        current = self.conversation.id if self.conversation else None
        if conversations is None:
            conversations = self.db.conversations(search=query or None)
        self.listed = [(c.id, c.title) for c in conversations]
        self.query_one(Sidebar).show(conversations, current, query)

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
        # the row, its KV file and what /attach indexed for it
        delete_conversation(self.chat_app.settings, self.db, conversation_id)
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

    # -- the model (screens/lifecycle.py) ----------------------------------------------------
    def model_loading(self, request: str, fraction: float | None) -> None:
        lifecycle.model_loading(self, request, fraction)

    def model_ready(self, model: LoadedModel, assign_to: int | None, announce: bool = True) -> None:
        lifecycle.model_ready(self, model, assign_to, announce)

    def model_failed(self, request: str, error: str) -> None:
        lifecycle.model_failed(self, request, error)

    def params(self, model: LoadedModel) -> GenParams | None:
        return lifecycle.params(self, model)

    def prepare_context(self) -> None:
        lifecycle.prepare_context(self)

    # -- a turn --------------------------------------------------------------------------
    @on(PromptInput.Submitted)
    async def _submitted(self, event: PromptInput.Submitted) -> None:
        text = event.text
        if self.editing is None:
            command = commands.parse(text.strip())
            if command is not None:
                self.prompt.clear()
                await commands.run(self, *command)
                return
            unknown = slash.unknown_command(text.strip())
            if unknown is not None:  # kept in the prompt to be fixed, never sent to the model
                self.transcript.notice(unknown, error=True)
                return
        await self.send(slash.literal(text))

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
        if params is None or await peers.held(self):  # another window changed this chat unseen
            return
        if self.editing is None and rag_commands.offer_quality_model(self, pending=text):
            self.prompt.clear()  # sent once the question is answered
            return
        self.prompt.clear()
        self.prompt.prompts.append(text)
        edit_from = self.editing
        attachments, self.pending = list(self.pending), []
        self.cancel_edit()
        self.show_pending()
        media.stop_speaking(self)  # the previous reply read aloud gives way to the new one
        await turn_worker.begin(self, model, params, text, edit_from, attachments)

    def show_pending(self) -> None:
        self.query_one(AttachmentBar).show(self.pending)

    @on(PromptInput.PastedImage)
    def _pasted_image(self, event: PromptInput.PastedImage) -> None:
        media.attach(self, str(event.path))

    @on(ReplyContext)
    def _reply_context(self, event: ReplyContext) -> None:
        turn_worker.show_context(self, event)

    @on(ReplyText)
    async def _reply_text(self, event: ReplyText) -> None:
        media.reply_text(self, event.job.reply_id, event.text, current=event.job is self.job)
        await turn_worker.show_text(self, event)

    @on(ReplyDone)
    async def _turn_done(self, event: ReplyDone) -> None:
        media.reply_done(self, event.job.reply_id)
        await turn_worker.finish(self, event)

    def set_generating(self, generating: bool) -> None:
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
        if params is None or await peers.held(self):
            return
        await turn_worker.begin(self, model, params, None, edit_from=view.message_id)

    def start_edit(self, view: MessageView) -> None:
        if self.job is not None:
            self.notify("Wait for the reply to finish (Esc stops it)", severity="warning")
            return
        self.editing = view.message_id
        self.pending = list(view.stored.attachments)  # the edited message keeps its images
        self.show_pending()
        self.prompt.load_text(view.content)
        self.prompt.move_cursor(self.prompt.document.end)
        self.prompt.border_title = EDIT_TITLE
        self.prompt.focus()
        self.refresh_bindings()

    def cancel_edit(self) -> None:
        if self.editing is not None:
            self.editing = None
            self.pending = []
            self.show_pending()
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
        self.status.set(rag=rag.collection_of(self.conversation))

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
        # Textual keeps `text` as the app's clipboard too: the prompt's Ctrl+V pastes it from there
        self.app.copy_to_clipboard(text)
        self.notify(commands.copy_note(text, what, in_tmux=bool(os.environ.get("TMUX"))), timeout=8)

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
            return self.job is not None or media.speaking(self)
        if action == "cancel_edit":
            return self.job is None and self.editing is not None
        return True

    def action_stop(self) -> None:
        media.stop_speaking(self)
        if self.job is not None:
            self.job.stop.set()
            # the view shown now: a reopened conversation shows the reply in a new one
            view = self.transcript.view_for(self.job.reply_id) or self.replies.get(self.job.reply_id)
            if view is not None:
                view.set_header_note("stopping…")

    def action_talk(self) -> None:
        media.toggle_talk(self)

    def stop_media(self) -> None:
        """Leaving: stop a recording and any reading aloud (their workers end with them)."""
        media.stop_speaking(self)
        if self.recording is not None:
            self.recording.stopping = True
            self.recording.source.stop()

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

