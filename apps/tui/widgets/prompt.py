"""Where the user writes: a multi-line prompt with history and slash-command completion.

Boundary: editing keys only. Enter posts `PromptInput.Submitted`; Ctrl+J (and Alt+Enter or
Shift+Enter where the terminal reports them) inserts a newline; pasted text keeps its
newlines (TextArea inserts a paste as is); Up on the first line recalls earlier prompts.
While a `/word` is typed the matching commands show above the prompt (`Composer`); Tab or
Enter takes the highlighted one. Textual 8.2 reads Alt+Enter as Enter on terminals without
the kitty keyboard protocol (tmux, xterm, VTE: Textualize/textual#6378), hence Ctrl+J first.
A paste that is nothing but the path of an image file (a file dropped on the terminal) is not
inserted: `PastedImage` asks the screen to attach it, as `/image PATH` does. The composer
shows the images waiting for the next message (`AttachmentBar`).
"""

from __future__ import annotations

from textual import events, on
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.message import Message
from textual.widgets import Button, OptionList, TextArea
from textual.widgets.option_list import Option

from edgeai.chat.attachments import looks_like_image_path
from edgeai.tui import slash
from edgeai.tui.widgets.attachments import AttachmentBar

PLACEHOLDER = "Message  (Enter sends · Ctrl+J new line · / commands)"
NEWLINE_KEYS = ("alt+enter", "shift+enter", "ctrl+j")


class PromptInput(TextArea):
    class Submitted(Message):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    class PastedImage(Message):
        """A pasted (or dropped) path to an image file: attach it instead of inserting it."""

        def __init__(self, path) -> None:
            super().__init__()
            self.path = path

    class Suggest(Message):
        """The commands matching what is typed (empty: hide the list), and the highlighted one."""

        def __init__(self, matches: list[slash.SlashCommand], index: int) -> None:
            super().__init__()
            self.matches = matches
            self.index = index

    def __init__(self, **kwargs) -> None:
        super().__init__(soft_wrap=True, tab_behavior="focus", show_line_numbers=False,
                         highlight_cursor_line=False, placeholder=PLACEHOLDER, **kwargs)
        self.prompts: list[str] = []  # set by the screen: earlier prompts, oldest first
        self._recall: int | None = None  # index into history while browsing it
        self._draft = ""
        self._matches: list[slash.SlashCommand] = []
        self._index = 0

    # -- history -------------------------------------------------------------------------
    def _show(self, text: str) -> None:
        self.load_text(text)
        self.move_cursor(self.document.end)

    def _recall_step(self, step: int) -> bool:
        if not self.prompts:
            return False
        if self._recall is None:
            if step > 0:
                return False
            self._draft, self._recall = self.text, len(self.prompts)
        target = self._recall + step
        if target < 0:
            return True  # at the oldest: stay
        if target >= len(self.prompts):
            self._recall = None
            self._show(self._draft)
            return True
        self._recall = target
        self._show(self.prompts[target])
        return True

    # -- completion ----------------------------------------------------------------------
    @on(TextArea.Changed)
    def _changed(self) -> None:
        self._refresh_matches()

    def _refresh_matches(self) -> None:
        """The completions for the text as it is now. Enter calls this too: keys typed faster
        than the Changed messages are handled (a paste, tmux send-keys) must not submit the
        completion of an earlier text (`/stat` then `/bogus`⏎ ran `/stats`)."""
        matches = slash.complete(self.text)
        if len(matches) == 1 and self.text[1:].lower() == matches[0].name:
            matches = []  # fully typed: nothing left to suggest
        if [m.name for m in matches] != [m.name for m in self._matches]:
            self._matches, self._index = matches, 0
            self.post_message(self.Suggest(matches, 0))

    def _accept(self) -> None:
        chosen = self._matches[self._index]
        self._show(f"/{chosen.name}" + (" " if chosen.args else ""))

    def _move(self, step: int) -> None:
        self._index = (self._index + step) % len(self._matches)
        self.post_message(self.Suggest(self._matches, self._index))

    async def _on_paste(self, event: events.Paste) -> None:
        path = looks_like_image_path(event.text)
        if path is None:
            return  # TextArea's own handler (Textual calls it next, down the MRO) inserts it
        event.stop()
        event.prevent_default()
        self.post_message(self.PastedImage(path))

    # -- keys ----------------------------------------------------------------------------
    async def _on_key(self, event: events.Key) -> None:
        key = event.key
        handled = True
        if self._matches and key in ("tab", "up", "down", "escape"):
            if key == "tab":
                self._accept()
            elif key == "escape":
                self._matches = []
                self.post_message(self.Suggest([], 0))
            else:
                self._move(-1 if key == "up" else 1)
        elif key == "enter":
            self._refresh_matches()
            if self._matches and not self._matches[self._index].args:
                self._show(f"/{self._matches[self._index].name}")
                self._submit()
            elif self._matches:
                self._accept()
            else:
                self._submit()
        elif key in NEWLINE_KEYS:
            self.insert("\n")
        elif key == "up" and self.cursor_location[0] == 0:
            handled = self._recall_step(-1)
        elif key == "down" and self._recall is not None and \
                self.cursor_location[0] == self.document.line_count - 1:
            handled = self._recall_step(1)
        else:
            handled = False
        if handled:
            event.stop()
            event.prevent_default()
        else:
            await super()._on_key(event)

    def _submit(self) -> None:
        text = self.text
        if not text.strip():
            return
        self._recall = None
        self.post_message(self.Submitted(text))


class Composer(Vertical):
    """The prompt, the command suggestions above it, and the Stop button beside it."""

    def compose(self):
        suggestions = OptionList(id="suggestions")
        suggestions.can_focus = False
        suggestions.display = False
        yield suggestions
        pending = AttachmentBar(id="pending")
        pending.display = False
        yield pending
        with Horizontal(id="composer-row"):
            yield PromptInput(id="prompt")
            stop = Button("■ Stop", id="stop", variant="error", compact=True)
            stop.can_focus = False
            yield stop

    @on(PromptInput.Suggest)
    def _suggest(self, event: PromptInput.Suggest) -> None:
        event.stop()
        suggestions = self.query_one("#suggestions", OptionList)
        suggestions.display = bool(event.matches)
        if event.matches:
            width = max(len(m.usage) for m in event.matches)
            room = max(10, self.size.width - width - 6)  # one line each: a wrapped list jumps
            suggestions.set_options(
                Option(Content(f"{m.usage.ljust(width)}  {_fit(m.help, room)}"), id=m.name)
                for m in event.matches)
            suggestions.highlighted = event.index


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
