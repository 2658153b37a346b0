"""What each slash command does on the chat screen (`/system`, `/model`, `/set`, `/export`, …).

Boundary: one small function per command, acting through the screen's public methods and
chat.db. The vocabulary (names, help, completion) is `edgeai.tui.slash`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import fields
from typing import TYPE_CHECKING

from edgeai.chat.conversations import NEW_TITLE, clear_conversation
from edgeai.errors import EdgeAIError, describe
from edgeai.tui import slash
from edgeai.tui.export import export_conversation
from edgeai.tui.screens import media, rag_commands
from edgeai.types import GenParams

if TYPE_CHECKING:
    from edgeai.tui.screens.chat import ChatScreen

# sampling options /set understands, with the type their value is read as
SETTABLE = {f.name: (int if f.name in ("max_tokens", "top_k", "seed") else float)
            for f in fields(GenParams) if f.name not in ("stop", "response_format")}

parse = slash.parse


async def run(screen: ChatScreen, name: str, arg: str) -> None:
    handler = HANDLERS[name]
    try:
        await handler(screen, arg)
    except EdgeAIError as exc:
        screen.transcript.notice(f"/{name}: {describe(exc)}", error=True)


async def _new(screen: ChatScreen, arg: str) -> None:
    await screen.new_conversation(arg or NEW_TITLE)


async def _system(screen: ChatScreen, arg: str) -> None:
    conv = screen.conversation
    if conv is None:
        return
    if not arg:
        shown = f"system prompt: {conv.system}" if conv.system else "no system prompt"
        screen.transcript.notice(f"{shown} (/system TEXT sets it, /system off removes it)")
        return
    system = None if arg.lower() in ("off", "none") else arg
    screen.conversation = screen.db.update_settings(conv.id, system=system)
    screen.transcript.notice("system prompt removed" if system is None else f"system prompt: {system}")
    screen.prepare_context()


async def _model(screen: ChatScreen, arg: str) -> None:
    if not arg:
        screen.action_pick_model()
        return
    conv = screen.conversation
    screen.chat_app.request_model(arg, None, conv.id if conv else None)


def _current_params(screen: ChatScreen) -> str:
    model = screen.chat_app.model
    params = screen.params(model) if model else None
    own = screen.conversation.params if screen.conversation else {}
    if params is None:
        return ", ".join(f"{k}={v}" for k, v in own.items()) or "model defaults"
    shown = [f"{k}={getattr(params, k)}" + ("*" if k in own else "") for k in SETTABLE]
    return ", ".join(shown) + "  (* set for this conversation)"


async def _set(screen: ChatScreen, arg: str) -> None:
    conv = screen.conversation
    if conv is None:
        return
    key, _, value = arg.partition(" ")
    key = key.replace("-", "_")
    if not key:
        screen.transcript.notice(_current_params(screen))
        return
    if key not in SETTABLE or not value.strip():
        screen.transcript.notice(f"usage: /set KEY VALUE with KEY one of {', '.join(SETTABLE)}",
                                 error=True)
        return
    try:
        parsed = SETTABLE[key](value.strip())
    except ValueError:
        screen.transcript.notice(f"/set {key}: {value.strip()!r} is not a number", error=True)
        return
    _store_params(screen, {**conv.params, key: parsed}, f"{key} = {parsed} for this conversation")


async def _unset(screen: ChatScreen, arg: str) -> None:
    conv = screen.conversation
    key = arg.replace("-", "_").strip()
    if conv is None or key not in conv.params:
        screen.transcript.notice(f"{key or 'nothing'} is not set for this conversation", error=True)
        return
    params = {k: v for k, v in conv.params.items() if k != key}
    _store_params(screen, params, f"{key} back to the model's default")


def _store_params(screen: ChatScreen, params: dict, said: str) -> None:
    conv = screen.conversation
    model = screen.chat_app.model
    if model is not None:
        from edgeai.runtime.loader import gen_params

        gen_params(model.spec, {**screen.chat_app.overrides, **params})  # BadInput: not stored
    screen.conversation = screen.db.update_settings(conv.id, params=params)
    screen.transcript.notice(said)
    screen.prepare_context()  # the reply's reserve may have changed


async def _rename(screen: ChatScreen, arg: str) -> None:
    if arg:
        screen.rename(arg)
    else:
        screen.action_rename()


async def _delete(screen: ChatScreen, arg: str) -> None:
    if screen.conversation is not None:
        screen.request_delete(screen.conversation.id)


async def _clear(screen: ChatScreen, arg: str) -> None:
    conv = screen.conversation
    if conv is None:
        return
    if screen.job is not None:
        screen.notify("Wait for the reply to finish (Esc stops it)", severity="warning")
        return
    removed = clear_conversation(screen.chat_app.settings, screen.db, conv.id)  # and its KV file
    await screen.open_conversation(conv.id)
    screen.notify(f"Cleared {removed} messages")


async def _export(screen: ChatScreen, arg: str) -> None:
    if screen.conversation is None:
        return
    written = export_conversation(screen.db, screen.conversation.id, arg or None)
    screen.transcript.notice("exported to " + ", ".join(str(p) for p in written))


async def _copy(screen: ChatScreen, arg: str) -> None:
    view = screen.transcript.last("assistant")
    if view is None:
        screen.notify("Nothing to copy yet", severity="warning")
    else:
        screen.copy(view.content, "the last reply")


def copy_note(text: str, what: str, in_tmux: bool) -> str:
    """What a copy did, honestly. OSC 52 (Textual's `copy_to_clipboard`) is a one-way escape
    sequence: a terminal that ignores it (tmux without `set-clipboard on`, macOS Terminal, most
    SSH chains) says nothing, so the app cannot claim the text reached the system clipboard.
    What it can promise is its own register, which Ctrl+V in the prompt pastes, and /export."""
    note = (f"{what[:1].upper()}{what[1:]} ({len(text):,} characters) sent to the terminal's "
            "clipboard (OSC 52) — your terminal may not accept it. Ctrl+V pastes it here; "
            "/export writes a file.")
    if in_tmux:  # the one setting that makes tmux pass it on
        note += " In tmux: set -g set-clipboard on"
    return note


async def _regen(screen: ChatScreen, arg: str) -> None:
    view = screen.transcript.last("assistant")
    if view is None:
        screen.notify("No reply to regenerate", severity="warning")
    else:
        await screen.regenerate(view)


async def _stats(screen: ChatScreen, arg: str) -> None:
    screen.action_toggle_stats()


async def _draft(screen: ChatScreen, arg: str) -> None:
    from edgeai.runtime.base import draft_of
    from edgeai.runtime.speculative import switch_draft

    model = screen.chat_app.model
    if model is None:
        screen.transcript.notice("no model is loaded", error=True)
        return
    if not arg:
        now = draft_of(model.backend)
        screen.transcript.notice(f"drafting: {now} (/draft ngram|off|auto|MODEL; "
                                 "/stats shows the drafts accepted)")
        return
    if not model.lock.acquire(blocking=False):  # a reply is streaming: never block the UI on it
        screen.transcript.notice("/draft: wait for the reply to finish", error=True)
        return
    try:
        screen.transcript.notice(switch_draft(screen.chat_app.settings, model.request, model.backend, arg))
    finally:
        model.lock.release()


async def _search(screen: ChatScreen, arg: str) -> None:
    screen.action_search(arg)


async def _help(screen: ChatScreen, arg: str) -> None:
    screen.chat_app.action_help()


async def _quit(screen: ChatScreen, arg: str) -> None:
    await screen.chat_app.action_quit()


async def _image(screen: ChatScreen, arg: str) -> None:
    media.attach(screen, arg)


async def _audio(screen: ChatScreen, arg: str) -> None:
    media.transcribe_file(screen, arg)


def _switch(arg: str, now: bool) -> bool | None:
    """'on'/'off' -> True/False, nothing -> the other state, anything else -> None."""
    word = arg.strip().lower()
    return not now if not word else {"on": True, "off": False}.get(word)


async def _speak(screen: ChatScreen, arg: str) -> None:
    on = _switch(arg, screen.read_aloud)
    if on is None:
        screen.transcript.notice("usage: /speak [on|off]", error=True)
    else:
        media.set_read_aloud(screen, on)


async def _handsfree(screen: ChatScreen, arg: str) -> None:
    on = _switch(arg, screen.hands_free)
    if on is None:
        screen.transcript.notice("usage: /handsfree [on|off]", error=True)
    else:
        media.set_hands_free(screen, on)


HANDLERS: dict[str, Callable[[ChatScreen, str], Awaitable[None]]] = {
    "new": _new, "system": _system, "model": _model, "set": _set, "unset": _unset,
    "rename": _rename, "delete": _delete, "clear": _clear, "export": _export, "copy": _copy,
    "regen": _regen, "stats": _stats, "draft": _draft, "search": _search, "help": _help, "quit": _quit,
    "rag": rag_commands.rag, "attach": rag_commands.attach, "sources": rag_commands.sources,
    "image": _image, "audio": _audio, "speak": _speak, "handsfree": _handsfree,
}
