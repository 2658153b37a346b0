"""The key and slash-command reference (F1 or ?).

The commands are generated from the slash table. The keys are written by hand: one line often
covers keys of several widgets (Up/Down in the prompt, the messages, the list) and says more
than a binding's footer label; a test checks that every key the footer shows is listed here.
"""

from __future__ import annotations

from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from edgeai.tui import slash

KEYS = [
    ("Enter", "send"),
    ("Ctrl+J", "new line (pasted text keeps its lines)"),
    ("Alt+Enter, Shift+Enter", "new line, where the terminal reports these keys"),
    ("Up (first line) / Down", "earlier / later prompts"),
    ("Tab", "complete a /command"),
    ("Esc", "stop the reply (keeps what was written) and any reading aloud; cancel an edit"),
    ("Ctrl+T or F4", "push-to-talk: record, press again to put the transcript in the prompt"),
    ("Ctrl+N", "new conversation"),
    ("Ctrl+O", "choose a model: catalog, .gguf path or endpoint URL"),
    ("Ctrl+B or F3", "show or hide the chats sidebar"),
    ("Ctrl+F", "search conversations; Down or Enter moves on to the list"),
    ("F2", "rename this conversation"),
    ("Delete or Ctrl+D (in the list)", "delete the highlighted conversation"),
    ("Shift+Tab", "from the prompt to the messages; Up/Down move between them"),
    ("c / y on a message", "copy it / its code blocks one by one (OSC 52: the terminal may refuse)"),
    ("Ctrl+V (in the prompt)", "paste what c / y copied last"),
    ("e / r on a message", "edit and resend (yours) / regenerate (a reply)"),
    ("i on a reply", "its statistics"),
    ("s / 1-9 on a reply", "its sources / open source n in the side panel (RAG)"),
    ("Esc (in the sources panel)", "close it"),
    ("Ctrl+P", "command palette (also: theme)"),
    ("F1 or ?", "this help"),
    ("Ctrl+Q", "quit"),
]


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,f1,question_mark", "dismiss(None)", "Close")]

    def compose(self):
        width = max(len(k) for k, _ in KEYS)
        keys = "\n".join(f"{k.ljust(width)}  {what}" for k, what in KEYS)
        with VerticalScroll(classes="dialog help"):
            yield Label("Keys", classes="dialog-title")
            yield Static(keys, markup=False)
            yield Label("Commands", classes="dialog-title")
            yield Static("\n".join(slash.help_lines()), markup=False)
            yield Label("Esc closes", classes="dialog-hint")
