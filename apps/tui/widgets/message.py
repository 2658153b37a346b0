"""One message in the transcript: who said it, a thinking block, the text, and its statistics.

Boundary: display and per-message keys only. A reply streams in through `write()` (Textual's
MarkdownStream, which batches fragments faster than the widget can re-render) and is settled
by `finish()`. What the keys do (copy, edit, regenerate, open a source) is decided by the
screen: the view posts `MessageView.Action` upwards. A reply that used documents shows its
strategy and its citations under the text ([1] file, page or lines); 1-9 open one, s all.
A user message shows its attachments under its text (`widgets/attachments.py`: the image drawn
where the app draws images, else its label); a reply says how each image was used
("image: OCR · 42 words", "image: VLM": the turn's route labels, kept in its stats).
"""

from __future__ import annotations

import re
from typing import Any

from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Collapsible, Label, Markdown, Static
from textual.widgets.markdown import MarkdownStream

from edgeai.chatdb import StoredMessage
from edgeai.rag.context import Source, source_from_dict
from edgeai.tui.widgets.attachments import ImagePreview

CODE_BLOCK = re.compile(r"^```[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)
STATUS_WORDS = {"streaming": "writing…", "interrupted": "interrupted", "error": "failed"}


def code_blocks(text: str) -> list[str]:
    return [m.group(1).rstrip("\n") for m in CODE_BLOCK.finditer(text)]


def format_sources(rag: dict[str, Any], streaming: bool = False) -> str:
    """'retrieval · 2 sources' and one line per source: '[1] notes.pdf p. 3'."""
    if not rag:
        return ""
    lines = [str(rag.get("label", ""))]
    sources = [source_from_dict(s) for s in rag.get("sources", [])]
    if streaming or not sources:
        return lines[0]
    cited = [s for s in sources if s.cited]
    if not rag.get("cited") or not cited:
        lines[0] += " · none cited; consulted:"
        return "\n".join([*lines, *(s.label for s in sources)])
    lines[0] += f" · {len(cited)} cited"
    lines += [s.label for s in cited]
    consulted = [s for s in sources if not s.cited]  # placed but not cited: still 1-9 to open
    if consulted:
        lines.append("also consulted: " + " · ".join(s.label for s in consulted))
    return "\n".join(lines)


def format_images(stats: dict[str, Any]) -> str:
    """How the reply's images were used: 'image: OCR · 42 words', 'images: VLM; OCR · 3 words'."""
    labels = stats.get("images") or []
    if not labels:
        return ""
    return ("image: " if len(labels) == 1 else "images: ") + "; ".join(labels)


def format_stats(stats: dict[str, Any]) -> str:
    """'42 tokens · 0.31 s to first token · 35.2 tok/s · prompt 120 tokens at 800 tok/s · 512 MB'."""
    parts = []
    if stats.get("completion_tokens") is not None:
        parts.append(f"{stats['completion_tokens']} tokens")
    if stats.get("ttft_s") is not None:
        parts.append(f"{stats['ttft_s']:.2f} s to first token")
    if stats.get("gen_tps"):
        parts.append(f"{stats['gen_tps']:.1f} tok/s")
    if stats.get("prompt_tokens") is not None:
        rate = f" at {stats['prompt_tps']:.0f} tok/s" if stats.get("prompt_tps") else ""
        parts.append(f"prompt {stats['prompt_tokens']} tokens{rate}")
    if stats.get("drafted"):  # speculative decoding: how many drafts the model accepted
        parts.append(f"drafts {stats.get('accepted') or 0}/{stats['drafted']} accepted")
    if stats.get("peak_mem_mb"):
        parts.append(f"{stats['peak_mem_mb']:.0f} MB peak")
    if stats.get("dropped"):
        parts.append(f"{stats['dropped']} old messages left out to fit")
    if stats.get("model"):
        parts.append(f"{stats['model']} on {stats.get('backend', '?')}")
    return " · ".join(parts) or "no statistics"


class MessageView(Vertical, can_focus=True):
    BINDINGS = [
        Binding("c", "act('copy')", "Copy"),
        Binding("y", "act('copy_code')", "Copy code"),
        Binding("e", "act('edit')", "Edit & resend"),
        Binding("r", "act('regenerate')", "Regenerate"),
        Binding("i", "toggle_stats", "Stats"),
        Binding("s", "act('sources')", "Sources"),
        *(Binding(str(n), f"open_source({n})", f"Source {n}", show=False) for n in range(1, 10)),
        Binding("up,k", "neighbour(-1)", "Previous", show=False),
        Binding("down,j", "neighbour(1)", "Next", show=False),
    ]

    class Action(Message):
        """A key asked for something only the screen can do (copy, edit, regenerate)."""

        def __init__(self, view: MessageView, action: str) -> None:
            super().__init__()
            self.view = view
            self.action = action

    def __init__(self, stored: StoredMessage, label: str, show_stats: bool = False) -> None:
        super().__init__(classes=f"message -{stored.role}")
        self.stored = stored
        self.content = stored.content
        self.reasoning = stored.reasoning
        self.status = stored.status
        self.stats = dict(stored.stats)
        self.rag = dict(stored.rag)
        self.label = label
        self.show_stats = show_stats
        self._stream: MarkdownStream | None = None
        self._code_index = 0

    @property
    def message_id(self) -> int:
        return self.stored.id

    @property
    def role(self) -> str:
        return self.stored.role

    def compose(self):
        yield Label(self._header(), classes="header", markup=False)
        if self.role == "assistant":
            with Collapsible(title=self._thinking_title(), collapsed=True, classes="thinking") as c:
                c.display = bool(self.reasoning)
                yield Static(self.reasoning, markup=False, classes="reasoning")
            used = Static(format_images(self.stats), markup=False, classes="images")
            used.display = bool(used.content)
            yield used
            yield Markdown(self.content, classes="body")
            sources = Static(self._sources_text(), markup=False, classes="sources")
            sources.display = bool(self.rag)
            yield sources
        else:
            yield Static(self.content, markup=False, classes="body")
            draw = getattr(self.app, "inline_images", True)
            for record in self.stored.attachments:
                yield ImagePreview(record, draw=draw)
        meta = Static(self._meta(), markup=False, classes="meta")
        meta.display = self._meta_visible()
        yield meta

    # -- what is shown -------------------------------------------------------------------
    def _header(self) -> str:
        who = "You" if self.role == "user" else self.label
        if self.role == "assistant" and self.stats.get("finish_reason") == "cancelled":
            return f"{who} · stopped"
        word = STATUS_WORDS.get(self.status)
        return f"{who} · {word}" if word else who

    def _thinking_title(self) -> str:
        words = len(self.reasoning.split())
        return f"Thinking ({words} words)" if words else "Thinking"

    def _meta(self) -> str:
        error = self.stats.get("error")
        if error and not self.show_stats:
            return f"error: {error}"
        text = format_stats(self.stats)
        return f"{text}\nerror: {error}" if error else text

    def _sources_text(self) -> str:
        return format_sources(self.rag, streaming=self.status == "streaming")

    @property
    def sources(self) -> list[Source]:
        return [source_from_dict(s) for s in self.rag.get("sources", [])]

    def set_rag(self, rag: dict[str, Any]) -> None:
        self.rag = dict(rag)
        if self.is_attached and self.role == "assistant":
            shown = self.query_one(".sources", Static)
            shown.update(self._sources_text())
            shown.display = bool(self.rag)

    def _meta_visible(self) -> bool:
        return self.role == "assistant" and (self.show_stats or bool(self.stats.get("error")))

    def _refresh_meta(self) -> None:
        self.query_one(".header", Label).update(self._header())
        if self.role == "assistant":
            used = self.query_one(".images", Static)
            used.update(format_images(self.stats))
            used.display = bool(format_images(self.stats))
        meta = self.query_one(".meta", Static)
        meta.update(self._meta())
        meta.display = self._meta_visible()

    # -- streaming -----------------------------------------------------------------------
    async def write(self, text: str, reasoning: str) -> None:
        if not self.is_attached:
            return  # the conversation was switched away while the reply streamed
        if reasoning:
            self.reasoning += reasoning
            block = self.query_one(".thinking", Collapsible)
            block.display = True
            block.title = self._thinking_title()
            self.query_one(".reasoning", Static).update(self.reasoning)
        if text:
            self.content += text
            if self._stream is None:
                self._stream = Markdown.get_stream(self.query_one(".body", Markdown))
            await self._stream.write(text)

    async def finish(self, content: str, reasoning: str, status: str, stats: dict[str, Any],
                     rag: dict[str, Any] | None = None) -> None:
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None
        if not self.is_attached:
            return
        if content != self.content:  # batches lost to a failure, or a reply that never streamed
            self.content = content
            await self.query_one(".body", Markdown).update(content)
        self.reasoning, self.status, self.stats = reasoning, status, dict(stats)
        self._refresh_meta()
        if rag is not None:
            self.set_rag(rag)

    def set_stats_visible(self, visible: bool) -> None:
        self.show_stats = visible
        self._refresh_meta()

    def set_header_note(self, note: str) -> None:
        if not self.is_attached:
            return  # removed by a switch while its reply was still finishing
        self.query_one(".header", Label).update(f"{self._header()} · {note}")

    def next_code_block(self) -> tuple[int, int, str] | None:
        """The next code block to copy: (number, of how many, code); repeated presses cycle."""
        blocks = code_blocks(self.content)
        if not blocks:
            return None
        index = self._code_index % len(blocks)
        self._code_index = index + 1
        return index + 1, len(blocks), blocks[index]

    # -- keys ----------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "act" and parameters:
            wanted = parameters[0]
            if wanted == "edit":
                return self.role == "user"
            if wanted in ("regenerate", "copy_code"):
                return self.role == "assistant"
            if wanted == "sources":
                return bool(self.rag.get("sources"))
        if action == "open_source" and parameters:
            return isinstance(parameters[0], int) and parameters[0] <= len(self.rag.get("sources", []))
        if action == "toggle_stats":
            return self.role == "assistant"
        return True

    def action_act(self, action: str) -> None:
        self.post_message(self.Action(self, action))

    def action_open_source(self, number: int) -> None:
        self.post_message(self.Action(self, f"source {number}"))

    def on_click(self, event) -> None:
        # a click on the citations opens them (the keys 1-9 and s do the same)
        widget = getattr(event, "widget", None)
        if widget is not None and widget.has_class("sources") and self.rag.get("sources"):
            self.post_message(self.Action(self, "sources"))

    def action_toggle_stats(self) -> None:
        self.set_stats_visible(not self.show_stats)

    def action_neighbour(self, step: int) -> None:
        views = list(self.parent.query(MessageView)) if self.parent else []
        index = views.index(self) + step if self in views else -1
        if 0 <= index < len(views):
            views[index].focus()
            views[index].scroll_visible()
        elif step > 0:
            self.screen.focus_next("PromptInput")


class Notice(Static):
    """A line from the app itself (errors, hints, help): shown, never stored."""

    def __init__(self, text: str, error: bool = False) -> None:
        super().__init__(text, markup=False, classes="notice -error" if error else "notice")
