"""The status bar: which model runs where, how full the context is, and the last reply's speed.

Boundary: formatting only; the screen sets the fields. With `live_stats` off (snapshot
tests) the timing and memory figures, which differ on every run, are not shown.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

WARN_AT = 0.9  # warn when context + the reply's reserve passes this share of the window


@dataclass(frozen=True)
class StatusState:
    model: str | None = None
    backend: str | None = None
    loading: str | None = None  # "qwen… 45%" while a model loads
    problem: str | None = None  # why there is no model
    context_used: int | None = None
    context_window: int | None = None
    reserve: int = 0
    generating: bool = False
    ttft_s: float | None = None
    gen_tps: float | None = None
    peak_mem_mb: float | None = None
    note: str | None = None  # e.g. "resumed 1,204 cached tokens"
    rag: str | None = None  # the collection answers come from
    media: str | None = None  # recording (level meter, time), transcribing, speaking


def model_text(s: StatusState) -> Text:
    if s.loading:
        return Text(f"loading {s.loading}", style="bold")
    if s.model:
        text = Text(s.model, style="bold")
        text.append(f" · {s.backend}", style="dim")
        return text
    text = Text(s.problem or "no model", style="bold red")
    text.append(" · ctrl+o picks one", style="dim")
    return text


def context_text(s: StatusState) -> Text:
    text = Text()
    if s.rag:
        text.append(f"rag {s.rag}", style="bold")
        text.append("  ")
    if s.model and not s.loading and s.context_used is not None and s.context_window:
        text.append(f"ctx {s.context_used:,}/{s.context_window:,}")
        if s.context_used + s.reserve > WARN_AT * s.context_window:
            text.append(" ⚠ oldest messages will be left out", style="bold yellow")
    return text


def left_text(s: StatusState) -> Text:
    """Model and context in one line (what a narrow terminal shows first)."""
    text = model_text(s)
    context = context_text(s)
    if context:
        text.append("  ")
        text.append_text(context)
    return text


def right_text(s: StatusState, live_stats: bool) -> Text:
    text = Text(style="dim")
    if s.media:  # what the microphone or the speaker is doing comes first: it is live
        text.append(s.media, style="bold")
        if s.generating:
            text.append(" · generating… esc stops")
        return text
    if s.generating:
        text.append("generating… esc stops", style="bold")
        return text
    if s.note:
        text.append(s.note)
        return text
    if not live_stats:
        return text
    parts = []
    if s.ttft_s is not None:
        parts.append(f"TTFT {s.ttft_s:.2f}s")
    if s.gen_tps:
        parts.append(f"{s.gen_tps:.1f} tok/s")
    if s.peak_mem_mb:
        parts.append(f"{s.peak_mem_mb:.0f} MB")
    text.append(" · ".join(parts))
    return text


class StatusBar(Static):
    def __init__(self, live_stats: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.live_stats = live_stats
        self.state = StatusState()

    def set(self, **changes) -> None:
        self.state = replace(self.state, **changes)
        # the model name gives way first: context and speed stay readable at 80 columns
        grid = Table.grid(expand=True, padding=(0, 2))
        grid.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
        grid.add_column(no_wrap=True)
        grid.add_column(justify="right", no_wrap=True)
        grid.add_row(model_text(self.state), context_text(self.state),
                     right_text(self.state, self.live_stats))
        self.update(grid)

    @property
    def plain(self) -> str:
        left = left_text(self.state).plain
        return f"{left}  {right_text(self.state, self.live_stats).plain}".strip()

    def on_mount(self) -> None:
        self.set()
