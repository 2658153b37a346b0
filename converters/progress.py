"""How a conversion reports progress: stages with an optional total, advanced step by step.

The converters call only `start` and `advance`; the CLI draws them as rich bars, tests pass
`Progress()` (which draws nothing) or a recorder.
"""

from __future__ import annotations


class Progress:
    """The silent default; subclasses draw. `start` opens a stage, `advance` moves it on."""

    def start(self, name: str, total: int | None = None) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass
