"""The chat's slash commands as data: names, arguments, help, parsing and completion.

Boundary: text in, command names out. What a command does lives in the chat screen; this
module only knows the vocabulary, so the prompt's completion, `/help` and the help screen
all read one table.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class SlashCommand:
    name: str
    args: str
    help: str

    @property
    def usage(self) -> str:
        return f"/{self.name} {self.args}".rstrip()


COMMANDS: tuple[SlashCommand, ...] = (
    SlashCommand("new", "[TITLE]", "start a new conversation"),
    SlashCommand("system", "[TEXT]", "set this conversation's system prompt (no text: show it)"),
    SlashCommand("model", "[ID|PATH|URL]", "switch model (no argument: open the picker)"),
    SlashCommand("set", "[KEY VALUE]", "set a sampling option, e.g. /set temperature 0.2"),
    SlashCommand("unset", "KEY", "go back to the model's default for a sampling option"),
    SlashCommand("rename", "TITLE", "rename this conversation"),
    SlashCommand("delete", "", "delete this conversation"),
    SlashCommand("clear", "", "delete every message of this conversation"),
    SlashCommand("export", "[PATH]", "write Markdown + JSON here, to a folder, or one .md/.json file"),
    SlashCommand("copy", "", "copy the last reply to the clipboard"),
    SlashCommand("regen", "", "regenerate the last reply"),
    SlashCommand("stats", "", "show or hide each reply's statistics"),
    SlashCommand("draft", "[ngram|off|auto|MODEL]", "speculative decoding (no argument: show what drafts)"),
    SlashCommand("search", "TEXT", "search conversations (titles and messages)"),
    SlashCommand("rag", "[on NAME|off]", "answer from a document collection (no argument: show the state)"),
    SlashCommand("attach", "PATH...", "index files or folders for this conversation and answer from them"),
    SlashCommand("sources", "", "show or hide the sources panel (the last reply's sources)"),
    SlashCommand("image", "PATH|off", "attach an image to your next message (off: remove it)"),
    SlashCommand("audio", "PATH", "transcribe an audio file into the prompt"),
    SlashCommand("speak", "[on|off]", "read replies aloud as they are written (Esc stops)"),
    SlashCommand("handsfree", "[on|off]", "listen all the time; a pause sends what was said"),
    SlashCommand("help", "", "keys and commands"),
    SlashCommand("quit", "", "leave (also ctrl+q)"),
)

BY_NAME = {c.name: c for c in COMMANDS}
WORD = re.compile(r"[a-z][a-z0-9_-]*")  # what a command name looks like (a path has a slash in it)


def parse(text: str) -> tuple[str, str] | None:
    """'/set top_k 20' -> ('set', 'top_k 20'); None when the text is not a command.

    A message that merely starts with a slash path ('/usr/bin is…') is not a command: the
    first word must be a known name.
    """
    if not text.startswith("/"):
        return None
    name, _, arg = text[1:].partition(" ")
    name = name.strip().lower()
    if name not in BY_NAME:
        return None
    return name, arg.strip()


def unknown_command(text: str) -> str | None:
    """What to say when `text` names a command that does not exist ('/stat', '/bogus args'),
    else None: a mistyped command must not go to the model as a question. A path ('/usr/bin
    is…') is a message, and '//' escapes a leading slash (`literal`)."""
    if not text.startswith("/") or text.startswith("//"):
        return None
    word = text[1:].partition(" ")[0].strip().lower()
    if word in BY_NAME or not WORD.fullmatch(word):
        return None
    close = ([c.name for c in COMMANDS if c.name.startswith(word)]
             or difflib.get_close_matches(word, BY_NAME, n=1))
    hint = f"did you mean /{close[0]}?" if close else "/help lists them"
    return f"unknown command /{word} — {hint} (start with // to send a message that begins with /)"


def literal(text: str) -> str:
    """'//text' -> '/text': the message as the user meant it."""
    return text[1:] if text.startswith("//") else text


def looks_like_command(text: str) -> bool:
    """A single word after a slash, still being typed: where completion applies."""
    return text.startswith("/") and not any(c.isspace() for c in text)


def complete(prefix: str) -> list[SlashCommand]:
    """Commands whose name starts with what follows the slash."""
    if not looks_like_command(prefix):
        return []
    word = prefix[1:].lower()
    return [c for c in COMMANDS if c.name.startswith(word)]


def help_lines() -> list[str]:
    width = max(len(c.usage) for c in COMMANDS)
    return [f"{c.usage.ljust(width)}  {c.help}" for c in COMMANDS]
