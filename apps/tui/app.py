"""EdgeChatApp: the Textual app behind `edgeai chat`.

Boundary: the resources (settings, chat.db, the loaded model) and the app-wide keys and
command palette. The chat itself is `screens/chat.py`. `edgeai chat` opens chat.db and passes
`db=`; without it (bench/tui.py, tests) the app opens it with the same `open_chat_db`
(`edgeai.chat.store`),
so a broken file fails the constructor as it fails the CLI, before any screen. A model loads
in a thread worker after the first frame; a new model replaces the old one only once it has
loaded, so a failed load leaves the previous model in use. Tests inject `loaded=` (a ready
backend) or `loader=`, a `clock` for chat.db, `live_stats=False` so snapshots are
byte-stable, and `media=` (a `MediaKit`: the microphone, speech models and sound output that
push-to-talk, `/audio` and read-aloud use) so speech runs on a file and a fake sound card.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.worker import WorkerCancelled, WorkerFailed

from edgeai.chat.store import open_chat_db
from edgeai.chatdb import ChatDB
from edgeai.config import Settings
from edgeai.errors import describe
from edgeai.runtime.base import Backend
from edgeai.runtime.loaded import LoadedModel
from edgeai.tui.loader import Loader, default_loader
from edgeai.tui.media import MediaKit
from edgeai.tui.screens.chat import ChatScreen
from edgeai.tui.screens.help import HelpScreen
from edgeai.types import ModelSpec

PROGRESS_EVERY_S = 0.1
# Quitting stops a reply and waits at most this long for it to be saved (as interrupted) and
# its KV state written; after that it leaves without it: the partial saves every 0.5 s and
# the `interrupted` marking on the next start keep what was written.
SHUTDOWN_WAIT_S = 10.0
# then at most this long for the model's lock to close the backend; a worker still holding it
# is left to the process exit rather than hang the terminal
CLOSE_WAIT_S = 5.0


class EdgeChatApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "edgeai chat"
    BINDINGS = [
        Binding("f1", "help", "Help"),
        Binding("question_mark", "help", "Help", show=False),
    ]

    def __init__(self, settings: Settings, *, db: ChatDB | None = None,
                 loaded: tuple[Backend, ModelSpec] | None = None, loader: Loader | None = None,
                 model: str | None = None, backend: str | None = None, system: str | None = None,
                 overrides: Mapping[str, Any] | None = None, chat_template: str | None = None,
                 clock: Callable[[], float] = time.time, live_stats: bool = True,
                 media: MediaKit | None = None, inline_images: bool = True) -> None:
        super().__init__()
        self.settings = settings
        self.db: ChatDB = db if db is not None else open_chat_db(settings, clock=clock)
        self.clock = clock
        self.live_stats = live_stats
        self.media = media or MediaKit()
        self.inline_images = inline_images  # False: attachments as their one-line label only
        self.cli_model, self.cli_backend, self.system = model, backend, system
        self.overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
        self.loader = loader or default_loader(settings, chat_template)
        self.model: LoadedModel | None = None
        if loaded is not None:
            self.model = LoadedModel(loaded[0], loaded[1], loaded[1].id, settings.n_ctx)
        self._load_generation = 0
        self.chat: ChatScreen | None = None

    def on_mount(self) -> None:
        self.chat = ChatScreen()
        self.push_screen(self.chat)

    async def on_unmount(self) -> None:
        await self._stop_turns()
        if self.chat is not None:
            self.chat.stop_media()
        await asyncio.to_thread(self.media.close)
        if self.model is not None:
            # off the event loop and bounded: waiting for the lock here would freeze the UI
            # that a worker may still need, and a stuck worker must not hang the exit
            await asyncio.to_thread(self.model.close, CLOSE_WAIT_S)
        self.db.close()

    async def _stop_turns(self) -> None:
        """Stop a reply in flight and wait until it is saved (as interrupted)."""
        if self.chat is not None and self.chat.job is not None:
            self.chat.job.stop.set()
        turns = [w for w in self.workers if w.group == "turn" and not w.is_finished]
        if turns:
            try:
                await asyncio.wait_for(self.workers.wait_for_complete(turns), SHUTDOWN_WAIT_S)
            except (asyncio.TimeoutError, WorkerCancelled, WorkerFailed):
                pass  # cancelled or failed while we waited: either way it has stopped writing

    async def action_quit(self) -> None:
        await self._stop_turns()
        self.exit()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    # -- the model -----------------------------------------------------------------------
    def request_model(self, request: str, backend: str | None, assign_to: int | None) -> None:
        """Load a model in the background; on success it replaces the current one and, if
        `assign_to` is a conversation id, becomes that conversation's model."""
        self._load_generation += 1
        if self.chat is not None:
            self.chat.model_loading(request, None)
        self._load_worker(request, backend, assign_to, self._load_generation)

    @work(thread=True, group="load", exit_on_error=False)
    def _load_worker(self, request: str, backend: str | None, assign_to: int | None,
                     generation: int) -> None:
        done, last = [0], [0.0]

        def progress(advance: int, total: int) -> None:
            done[0] += advance
            now = time.monotonic()
            if total and now - last[0] >= PROGRESS_EVERY_S:
                last[0] = now
                self._from_thread(self.chat.model_loading, request, done[0] / total)

        try:
            instance, spec = self.loader(request, backend, progress)
        except Exception as exc:  # any failure is a message, and the old model stays
            self._from_thread(self._load_failed, generation, request, describe(exc))
            return
        model = LoadedModel(instance, spec, request, self.settings.n_ctx)
        if not self._from_thread(self._load_done, generation, model, assign_to):
            model.close()  # superseded by a later request, or the app has gone

    def _from_thread(self, callback: Callable[..., Any], *args: Any) -> Any:
        try:
            return self.call_from_thread(callback, *args)
        except RuntimeError:
            return None  # the app has exited

    def cancel_load(self) -> None:
        """Forget a load in flight: when it finishes, its model is closed instead of used."""
        self._load_generation += 1
        if self.chat is not None:
            self.chat.status.set(loading=None)

    def _load_done(self, generation: int, model: LoadedModel, assign_to: int | None) -> bool:
        if generation != self._load_generation or self.chat is None:
            return False
        old, self.model = self.model, model
        try:
            self.chat.model_ready(model, assign_to, announce=old is not None)
        finally:  # the swap has happened: the old model goes even if showing the new one failed
            if old is not None:
                self._close_worker(old)
        return True

    def _load_failed(self, generation: int, request: str, error: str) -> None:
        if generation == self._load_generation and self.chat is not None:
            self.chat.model_failed(request, error)

    @work(thread=True, group="close", exit_on_error=False)
    def _close_worker(self, model: LoadedModel) -> None:
        model.close()  # waits for its lock: a reply still finishing on it ends first

    # -- command palette -----------------------------------------------------------------
    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        if not isinstance(screen, ChatScreen):
            return
        yield SystemCommand("New conversation", "Start a new chat (ctrl+n)", screen.action_new_chat)
        yield SystemCommand("Choose model", "Catalog, .gguf path or endpoint URL (ctrl+o)",
                            screen.action_pick_model)
        yield SystemCommand("Rename conversation", "Give this chat a title (F2)", screen.action_rename)
        if screen.conversation is not None:
            conversation_id = screen.conversation.id
            yield SystemCommand("Delete conversation", "Delete this chat and its messages",
                                lambda: screen.request_delete(conversation_id))
        yield SystemCommand("Export conversation", "Write Markdown and JSON into the current folder",
                            lambda: screen.call_later(_command, screen, "export"))
        yield SystemCommand("Regenerate last reply", "Ask again",
                            lambda: screen.call_later(_command, screen, "regen"))
        yield SystemCommand("Copy last reply", "To the terminal (OSC 52) and Ctrl+V here",
                            lambda: screen.call_later(_command, screen, "copy"))
        yield SystemCommand("Clear conversation", "Delete every message of this chat",
                            lambda: screen.call_later(_command, screen, "clear"))
        yield SystemCommand("Toggle statistics", "Tokens, speed and memory of each reply",
                            screen.action_toggle_stats)
        yield SystemCommand("Toggle sources", "The last reply's sources, in a side panel (/sources)",
                            screen.action_toggle_sources)
        yield SystemCommand("Toggle sidebar", "Show or hide the chats (ctrl+b)",
                            screen.action_toggle_sidebar)
        yield SystemCommand("Search conversations", "Titles and messages (ctrl+f)", screen.action_search)
        yield SystemCommand("Help", "Keys and slash commands (F1)", self.action_help)


async def _command(screen: ChatScreen, name: str, arg: str = "") -> None:
    from edgeai.tui.screens import commands

    await commands.run(screen, name, arg)
