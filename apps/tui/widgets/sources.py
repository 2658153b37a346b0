"""The sources panel beside the transcript: the passages one reply was given, and the text of the
one selected (file, page or lines, the passage highlighted, the question's words in bold).

Boundary: display and keys only. The screen hands it a reply's sources (`show`); Up/Down in
the list show each source, Enter or Tab moves into the text to scroll it, Esc closes the
panel (`Closed` tells the screen to put the focus back on the prompt).
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from textual import on
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.widgets import Label, OptionList, Static
from textual.widgets.option_list import Option

from edgeai.rag.context import Source
from edgeai.rag.rerank import STOPWORDS


def question_terms(question: str) -> list[str]:
    """The words of a question worth emphasizing in a source: 3+ letters, not the stopwords the
    search itself leaves out."""
    words = {w.lower() for w in re.findall(r"\w{3,}", question)}
    return sorted(words - STOPWORDS, key=len, reverse=True)


def shown_path(file: str) -> str:
    """A source's file as the user knows it: relative to the current folder when inside it,
    else with ~ for the home folder."""
    path = Path(file)
    for base, prefix in ((Path.cwd(), ""), (Path.home(), "~/")):
        try:
            return prefix + str(path.relative_to(base))
        except ValueError:
            continue
    return file


def highlighted(text: str, terms: list[str]) -> Content:
    content = Content(text)
    if not terms:
        return content
    pattern = re.compile(r"(?<!\w)(?:" + "|".join(re.escape(t) for t in terms) + r")\w*", re.IGNORECASE)
    for m in pattern.finditer(text):
        content = content.stylize("bold underline", m.start(), m.end())
    return content


def cited_range(source: Source, shown: str) -> tuple[int, int] | None:
    """Where in `shown` (the passage's stripped text) the narrowed lines of a citation are, as
    character offsets, or None when the citation was not narrowed."""
    narrowed, whole = (replace(source, span=span or "").lines for span in (source.span, source.passage_span))
    if not source.passage_span or narrowed is None or whole is None:
        return None
    first = int(narrowed.split("-")[0]) - int(whole.split("-")[0])
    last = int(narrowed.split("-")[-1]) - int(whole.split("-")[0])
    skipped = source.text[: len(source.text) - len(source.text.lstrip())].count("\n")
    rows = shown.split("\n")
    first, last = first - skipped, last - skipped
    if not 0 <= first <= last < len(rows):
        return None
    start = sum(len(r) + 1 for r in rows[:first])
    return start, start + sum(len(r) + 1 for r in rows[first:last + 1]) - 1


class SourcesPanel(Vertical):
    BINDINGS = [Binding("escape", "close", "Close sources")]

    class Closed(Message):
        """The user closed the panel."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.sources: list[Source] = []
        self.terms: list[str] = []
        self.reply_id: int | None = None

    def compose(self):
        yield Label("Sources", id="sources-title", markup=False)
        yield OptionList(id="source-list")
        with VerticalScroll(id="source-view"):
            yield Static("", id="source-where", markup=False)
            yield Static("", id="source-text")

    def show(self, sources: list[Source], title: str, question: str = "",
             number: int | None = None, reply_id: int | None = None) -> None:
        """List `sources` and show source `number` (default: the first)."""
        self.sources, self.terms, self.reply_id = list(sources), question_terms(question), reply_id
        self.query_one("#sources-title", Label).update(title)
        listing = self.query_one("#source-list", OptionList)
        listing.set_options(Option(Content(s.label), id=str(i)) for i, s in enumerate(self.sources))
        index = next((i for i, s in enumerate(self.sources) if s.number == number), 0)
        if self.sources:
            listing.highlighted = index
            self.show_source(index)
        else:
            self.query_one("#source-where", Static).update("")
            self.query_one("#source-text", Static).update("no sources")

    @property
    def current(self) -> Source | None:
        index = self.query_one("#source-list", OptionList).highlighted
        return self.sources[index] if index is not None and index < len(self.sources) else None

    def show_source(self, index: int) -> None:
        source = self.sources[index]
        where = f" · {source.where}" if source.where else ""
        if source.passage_span:  # narrowed by attribution: the cited lines, within the passage shown
            where += f" (of {replace(source, page=None, span=source.passage_span).where})"
        self.query_one("#source-where", Static).update(f"[{source.number}] {shown_path(source.file)}{where}")
        text = source.text.strip()
        content = highlighted(text, self.terms)
        cited = cited_range(source, text)
        if cited is not None:
            content = content.stylize("reverse", *cited)
        self.query_one("#source-text", Static).update(content)
        self.query_one("#source-view", VerticalScroll).scroll_home(animate=False)

    def focus_list(self) -> None:
        self.query_one("#source-list", OptionList).focus()

    @on(OptionList.OptionHighlighted, "#source-list")
    def _highlighted(self, event: OptionList.OptionHighlighted) -> None:
        event.stop()
        if event.option_index is not None and event.option_index < len(self.sources):
            self.show_source(event.option_index)

    @on(OptionList.OptionSelected, "#source-list")
    def _selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.query_one("#source-view", VerticalScroll).focus()  # Enter: read (scroll) the text

    def action_close(self) -> None:
        self.display = False
        self.post_message(self.Closed())
