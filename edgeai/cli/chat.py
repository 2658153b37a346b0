"""`edgeai chat`: the Textual app (edgeai.tui), or with `--plain` a line-based REPL (like `ollama run`).

The plain REPL is interactive on a terminal (readline editing, `\"\"\"` for multi-line input,
Ctrl-C stops a reply and keeps what was said, Ctrl-D leaves) and reads one message per line
when stdin is a pipe (a pipe always gets the REPL). The app keeps conversations in
`<home>/chat.db`; a damaged or foreign chat.db is reported before the app starts and touched
only by `--reset-db`.
"""

from __future__ import annotations

import sys

import click

from edgeai.cli.common import (
    model_options,
    open_model,
    sampling_from,
    sampling_options,
    settings_from,
)
from edgeai.errors import BadInput, EdgeAIError

HELP = """commands:
  /system TEXT   set the system prompt (clears nothing)
  /clear         forget the conversation
  /bye           leave (also /exit, Ctrl-D)
  \"\"\"            start and end a multi-line message"""


def read_message(interactive: bool) -> str:
    prompt = ">>> " if interactive else ""
    line = input(prompt)
    if line.strip() != '"""':
        return line
    lines = []
    while (more := input("... " if interactive else "")).strip() != '"""':
        lines.append(more)
    return "\n".join(lines)


def handle_command(line: str, conversation) -> bool:
    """Apply a slash command; False means leave the REPL."""
    name, _, arg = line.strip().partition(" ")
    if name in ("/bye", "/exit", "/quit"):
        return False
    if name == "/clear":
        conversation.clear()
        click.secho("(conversation cleared)", dim=True)
    elif name == "/system":
        conversation.system = arg.strip() or None
        click.secho("(system prompt set)" if arg.strip() else "(system prompt removed)", dim=True)
    else:
        click.echo(HELP)
    return True


def say(backend, conversation, text: str, params, n_ctx: int) -> None:
    from edgeai.chat import Turn, chat_turn

    turn = Turn()
    try:
        for chunk in chat_turn(backend, conversation, text, params, n_ctx, turn):
            if chunk.reasoning:
                click.secho(chunk.reasoning, nl=False, err=True, dim=True)
            click.echo(chunk.text, nl=False)
        click.echo()
    except KeyboardInterrupt:
        click.secho("\n(stopped)", dim=True)
    except EdgeAIError as exc:  # one bad turn (a dropped endpoint, a template) keeps the REPL
        click.echo(f"edgeai: error: {exc.message}" + (f"; {exc.hint}" if exc.hint else ""), err=True)
    if turn.dropped:
        click.secho(f"(dropped {turn.dropped} old messages to fit the {n_ctx}-token window)",
                    dim=True, err=True)


@click.command()
@click.option("--plain", is_flag=True,
              help="Line-based REPL instead of the full-screen app (the default when stdin is a pipe).")
@click.option("--system", metavar="TEXT", help="System prompt (the app starts a new conversation with it).")
@click.option("--reset-db", is_flag=True,
              help="If chat.db cannot be opened, move it aside (renamed, not deleted) and start fresh.")
@model_options
@sampling_options
def chat(plain: bool, system: str | None, reset_db: bool, **opts) -> None:
    """Chat with a local model in the terminal."""
    from edgeai.runtime.loader import check_overrides
    from edgeai.tui.store import open_chat_db  # the app opens chat.db the same way

    settings = settings_from(opts)
    check_overrides(sampling_from(opts))  # bad flags exit 2 here, not on every message
    if plain or not sys.stdin.isatty():  # piped input: the REPL reads one message per line
        if reset_db:
            open_chat_db(settings, reset=True, report=_say_on_stderr).close()
        return plain_chat(settings, system, opts)
    from edgeai.tui.app import EdgeChatApp

    # fails here, before the screen changes; the app would open it the same way without db=
    db = open_chat_db(settings, reset=reset_db, report=_say_on_stderr)
    app = EdgeChatApp(settings, db=db, model=opts.get("model"), backend=opts.get("backend"),
                      system=system, overrides=sampling_from(opts),
                      chat_template=opts.get("chat_template"))
    app.run()
    return app.return_code or 0


def _say_on_stderr(text: str) -> None:
    click.secho(text, err=True)


def plain_chat(settings, system: str | None, opts) -> None:
    from edgeai.chat import Conversation
    from edgeai.runtime.loader import gen_params

    backend, spec = open_model(settings, opts.get("backend"), opts.get("chat_template"))
    try:
        if not spec.chat:
            raise BadInput(f"{spec.id} is a base model: it completes text but cannot chat",
                           f"use: edgeai run --model {spec.id} \"text to continue\"")
        params = gen_params(spec, sampling_from(opts))
        conversation = Conversation(system)
        interactive = sys.stdin.isatty()
        if interactive:
            import readline  # noqa: F401  (line editing and history for input())

            click.secho(f"{spec.id} on {backend.name} · /help for commands · Ctrl-D to leave",
                        dim=True)
        while True:
            try:
                text = read_message(interactive)
            except EOFError:
                break
            except KeyboardInterrupt:
                click.echo()
                continue
            if text.startswith("/"):
                if not handle_command(text, conversation):
                    break
            elif text.strip():
                say(backend, conversation, text, params, settings.n_ctx)
    finally:
        backend.close()
