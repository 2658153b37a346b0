"""`edgeai chat`: the Textual app (edgeai.tui), or with `--plain` a line-based REPL (like `ollama run`).

The plain REPL is interactive on a terminal (readline editing, `\"\"\"` for multi-line input,
Ctrl-C stops a reply and keeps what was said, Ctrl-D leaves) and reads one message per line
when stdin is a pipe (a pipe always gets the REPL). It runs the app's own turn
(`edgeai.chat.turn`) on an in-memory chat.db, so nothing it says is kept after it leaves. The
app keeps conversations in `<home>/chat.db`; a damaged or foreign chat.db is reported before the
app starts and touched only by `--reset-db`. Only the full-screen branch imports `edgeai.tui`
(tests/test_layering.py holds every other command to that).
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import click

from edgeai.cli.common import (
    adapter_from,
    adapter_option,
    mmproj_from,
    mmproj_option,
    model_options,
    open_model,
    sampling_from,
    sampling_options,
    settings_from,
)
from edgeai.errors import BadInput, EdgeAIError

if TYPE_CHECKING:
    from edgeai.config import Settings
    from edgeai.runtime.loaded import LoadedModel
    from edgeai.types import GenParams

HELP = """commands:
  /system TEXT   set the system prompt (clears nothing)
  /rag on NAME   answer from the documents of collection NAME (`edgeai rag add`); /rag off
  /draft [WHAT]  speculative decoding: ngram, off, auto or a draft MODEL (no argument: the state)
  /image PATH    send an image with your next message (a pasted image path does too); /image off
  /audio PATH    transcribe a recording: its text becomes your next message, to edit on a terminal
  /clear         forget the conversation
  /bye           leave (also /exit, Ctrl-D)
  \"\"\"            start and end a multi-line message"""


def read_message(interactive: bool, draft: str | None = None) -> str:
    """One message from the user; `draft` (a transcript) is put on the line to edit first."""
    prompt = ">>> " if interactive else ""
    if draft:
        import readline

        readline.set_startup_hook(lambda: readline.insert_text(draft))
    try:
        line = input(prompt)
    finally:
        if draft:
            readline.set_startup_hook(None)
    if line.strip() != '"""':
        return line
    lines = []
    while (more := input("... " if interactive else "")).strip() != '"""':
        lines.append(more)
    return "\n".join(lines)


def handle_command(line: str, session: PlainSession) -> bool:
    """Apply a slash command; False means leave the REPL."""
    name, _, arg = line.strip().partition(" ")
    if name in ("/bye", "/exit", "/quit"):
        return False
    if name == "/clear":
        session.clear()
        click.secho("(conversation cleared)", dim=True)
    elif name == "/rag":
        words = arg.split()
        if words[:1] == ["off"] and len(words) == 1:
            session.use_collection(None)
            click.secho("(RAG is off: answers no longer use documents)", dim=True)
        elif words[:1] == ["on"] and len(words) == 2:
            session.use_collection(words[1])
            click.secho(f"(RAG is on: answers use the collection {words[1]!r})", dim=True)
        else:
            click.echo("usage: /rag on NAME, or /rag off")
    elif name == "/draft":
        try:
            click.secho(f"({session.draft(arg.strip())})", dim=True)
        except EdgeAIError as exc:  # a refused drafter keeps the REPL
            click.echo(f"edgeai: error: {exc.message}", err=True)
    elif name == "/system":
        session.set_system(arg.strip() or None)
        click.secho("(system prompt set)" if arg.strip() else "(system prompt removed)", dim=True)
    elif name in ("/image", "/audio"):
        if not arg.strip():
            click.echo(f"usage: {name} PATH" + (", or /image off" if name == "/image" else ""))
            return True
        try:
            click.secho(f"({session.attach(arg.strip()) if name == '/image' else session.hear(arg.strip())})",
                        dim=True)
        except EdgeAIError as exc:  # a bad file keeps the REPL and what was attached
            click.echo(f"edgeai: error: {exc.message}", err=True)
        except KeyboardInterrupt:  # Ctrl-C stops a long transcription, not the REPL
            click.secho("\n(stopped)", dim=True)
    else:
        click.echo(HELP)
    return True


class PlainSession:
    """The REPL's one conversation: an in-memory chat.db, the loaded model, its sampling."""

    def __init__(self, settings: Settings, model: LoadedModel, params: GenParams,
                 system: str | None) -> None:
        from edgeai.chatdb import ChatDB

        self.settings, self.model, self.params = settings, model, params
        self.db = ChatDB.in_memory(home=settings.home)  # /image copies go to the data dir
        self.conversation = self.db.create_conversation(system=system, model=model.request,
                                                        backend=model.backend_name)
        self.last_stats: dict = {}
        self.pending: list[dict] = []  # images for the next message (`/image`, a pasted path)
        self.heard: str | None = None  # a transcript (`/audio`) waiting to be the next message
        self.stt = None  # the speech engine, loaded by the first `/audio`

    def clear(self) -> None:
        from edgeai.chat.conversations import clear_conversation

        clear_conversation(self.settings, self.db, self.conversation.id)

    def use_collection(self, name: str | None) -> None:
        from edgeai.chat.rag import use_collection

        self.conversation = use_collection(self.settings, self.db, self.conversation, name)

    def set_system(self, system: str | None) -> None:
        self.conversation = self.db.update_settings(self.conversation.id, system=system)

    def draft(self, value: str) -> str:
        """`/draft`: switch drafting, or (no argument) say what drafts and how the last reply went."""
        from edgeai.runtime.base import draft_of
        from edgeai.runtime.speculative import draft_note, switch_draft

        if value:
            with self.model.lock:
                return switch_draft(self.settings, self.model.request, self.model.backend, value)
        now = draft_of(self.model.backend)
        note = draft_note(self.last_stats)
        return f"drafting: {now}" + (f"; last reply: {note}" if note else "")

    def attach(self, path: str) -> str:
        """`/image PATH`: copy the image into the data dir (as the app does) for the next message."""
        from edgeai.chat.attachments import attach_image, label

        if path.lower() in ("off", "none", "clear"):
            self.pending.clear()
            return "no image attached"
        record = attach_image(self.settings.home, path.strip("'\""))
        if all(r["sha256"] != record["sha256"] for r in self.pending):
            self.pending.append(record)
        return f"attached {' '.join(map(label, self.pending))} · sent with your next message"

    def hear(self, path: str) -> str:
        """`/audio PATH`: transcribe a recording with the default speech model; the text waits to
        be the next message."""
        from edgeai.speech.stt import get_engine, transcribe

        source = Path(path.strip("'\"")).expanduser()
        if not source.is_file():  # before the model loads: a typo is said at once
            raise BadInput(f"no such audio file: {source}")
        if self.stt is None:
            self.stt = get_engine(settings=self.settings)
        text = transcribe(self.stt, source).text.strip()
        if not text:
            return f"{source.name}: nothing was heard"
        self.heard = text
        return f"heard {source.name}: {text}"

    def say(self, text: str) -> None:
        from edgeai.chat.turn import begin_turn, run_turn

        def show(text: str, reasoning: str) -> None:
            if reasoning:
                click.secho(reasoning, nl=False, err=True, dim=True)
            click.echo(text, nl=False)

        outcomes = []
        turn = begin_turn(self.db, self.conversation, text, self.model, surface="plain",
                          attachments=self.pending)
        self.pending = []
        self.conversation = turn.conversation
        try:
            out = run_turn(turn, self.model, self.params, self.settings, on_text=show,
                           on_outcome=outcomes.append)
            if out.text or out.status != "error":
                click.echo()
        except KeyboardInterrupt:  # saved as interrupted: the partial reply stays in the history
            click.secho("\n(stopped)", dim=True)
        out = outcomes[-1] if outcomes else None
        self.last_stats = dict(out.stats) if out is not None else {}
        if out is not None and out.error:  # one bad turn (a dropped endpoint, a template) keeps the REPL
            click.echo(f"edgeai: error: {out.error}", err=True)
        if out is not None and out.images:  # how each image was used, as `run --image` says it
            click.secho(f"({', '.join(out.images)})", dim=True, err=True)
        dropped = out.stats.get("dropped") if out is not None else None
        if dropped:
            click.secho(f"(dropped {dropped} old messages to fit the {self.model.n_ctx}-token window)",
                        dim=True, err=True)

    def close(self) -> None:
        self.db.close()


@click.command()
@click.option("--plain", is_flag=True,
              help="Line-based REPL instead of the full-screen app (the default when stdin is a pipe).")
@click.option("--system", metavar="TEXT", help="System prompt (the app starts a new conversation with it).")
@click.option("--reset-db", is_flag=True,
              help="If chat.db cannot be opened, move it aside (renamed, not deleted) and start fresh.")
@model_options
@sampling_options
@adapter_option
@mmproj_option
def chat(plain: bool, system: str | None, reset_db: bool, **opts) -> None:
    """Chat with a local model in the terminal."""
    from edgeai.chat.store import open_chat_db  # the app opens chat.db the same way
    from edgeai.runtime.loader import check_overrides

    adapter = adapter_from(opts)  # the run's base and the mlx backend, unless given
    mmproj = mmproj_from(opts)  # a bad projector file exits 2 here, before the screen changes
    settings = settings_from(opts)
    check_overrides(sampling_from(opts))  # bad flags exit 2 here, not on every message
    if plain or not sys.stdin.isatty():  # piped input: the REPL reads one message per line
        if reset_db:
            open_chat_db(settings, reset=True, report=_say_on_stderr).close()
        return plain_chat(settings, system, opts, adapter, mmproj)
    from edgeai.tui.app import EdgeChatApp  # the one command that imports the app
    from edgeai.tui.loader import default_loader

    if opts.get("threads"):  # --threads here means the app's (the config's `threads` are headless)
        settings = replace(settings, chat_threads=opts["threads"])

    # fails here, before the screen changes; the app would open it the same way without db=
    db = open_chat_db(settings, reset=reset_db, report=_say_on_stderr)
    # the adapter and the projector go with the model they were given for, not with one the app
    # switches to
    loader = default_loader(settings, opts.get("chat_template"),
                            adapter=(opts["model"], adapter) if adapter else None,
                            mmproj=(settings.model, mmproj) if mmproj else None) \
        if adapter or mmproj else None
    app = EdgeChatApp(settings, db=db, model=opts.get("model"), backend=opts.get("backend"),
                      system=system, overrides=sampling_from(opts),
                      chat_template=opts.get("chat_template"), loader=loader)
    app.run()
    return app.return_code or 0


def _say_on_stderr(text: str) -> None:
    click.secho(text, err=True)


def plain_chat(settings: Settings, system: str | None, opts: dict, adapter: str | None = None,
               mmproj: str | None = None) -> None:
    from edgeai.chat.attachments import looks_like_image_path
    from edgeai.runtime.loaded import LoadedModel
    from edgeai.runtime.loader import gen_params

    backend, spec = open_model(settings, opts.get("backend"), opts.get("chat_template"), chat=True,
                               adapter=adapter, mmproj=mmproj,
                               draft="auto")  # what the tune measured; /draft switches
    try:
        if not spec.chat:
            raise BadInput(f"{spec.id} is a base model: it completes text but cannot chat",
                           f"use: edgeai run --model {spec.id} \"text to continue\"")
        params = gen_params(spec, sampling_from(opts))
        # sized by the loaded backend's own window, as the app's turns are
        model = LoadedModel(backend, spec, settings.model, settings.n_ctx)
        session = PlainSession(settings, model, params, system)
        interactive = sys.stdin.isatty()
        if interactive:
            import readline  # noqa: F401  (line editing and history for input())

            click.secho(f"{spec.id} on {backend.name} · /help for commands · Ctrl-D to leave",
                        dim=True)
        try:
            while True:
                heard, session.heard = session.heard, None
                if heard and not interactive:  # piped: a transcript is the next message as heard
                    session.say(heard)
                    continue
                try:
                    text = read_message(interactive, heard)
                except EOFError:
                    break
                except KeyboardInterrupt:
                    click.echo()
                    continue
                if text.startswith("/"):
                    if not handle_command(text, session):
                        break
                elif (image := looks_like_image_path(text)) is not None:  # pasted or dropped: as /image
                    handle_command(f"/image {image}", session)
                elif text.strip():
                    session.say(text)
        finally:
            session.close()
    finally:
        backend.close()
