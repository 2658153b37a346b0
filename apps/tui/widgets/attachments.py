"""Attachments on screen: an image drawn inline in a message, and the images waiting to be sent.

Boundary: display only. `ImagePreview` shows the attachment's name and size at once
("[image: receipt.png 800×1200]", the placeholder every terminal can show) and then, from a
thread worker, a thumbnail drawn with half-block characters (▀: the top pixel as the
foreground colour, the bottom one as the background), which every truecolor terminal and tmux
draw; no terminal query is needed, so nothing races Textual for stdin (textual-image asks the
terminal about sixel/kitty support at import, which only works before the app starts, and
imports Pillow, which must stay out of the first paint). A missing or unreadable copy leaves
the placeholder with the reason. `AttachmentBar` lists what `/image` (or a pasted path) has
attached to the next message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.style import Style
from rich.text import Text
from textual import work
from textual.widgets import Static

from edgeai.chat.attachments import label

THUMB_COLUMNS = 48  # cells
THUMB_ROWS = 14  # cells: 28 pixel rows


def half_blocks(path: Path, columns: int = THUMB_COLUMNS, rows: int = THUMB_ROWS) -> Text:
    """The image at `path` as rows of ▀ cells, at most `columns` x `rows`, aspect kept (a
    terminal cell is about twice as tall as wide, so one cell holds two square pixels)."""
    from edgeai.vision.image import open_image

    opened = open_image(path)
    image = opened.image.convert("RGB")
    width, height = image.size
    scale = min(columns / width, 2 * rows / height, 1.0)
    size = (max(1, round(width * scale)), max(2, round(height * scale / 2) * 2))
    small = image.resize(size)
    image.close()
    pixels = small.load()
    text = Text(no_wrap=True, overflow="crop")
    for y in range(0, size[1], 2):
        for x in range(size[0]):
            top, bottom = pixels[x, y], pixels[x, y + 1]
            text.append("▀", Style(color=f"rgb({top[0]},{top[1]},{top[2]})",
                                   bgcolor=f"rgb({bottom[0]},{bottom[1]},{bottom[2]})"))
        if y + 2 < size[1]:
            text.append("\n")
    return text


class ImagePreview(Static):
    """One attachment of a message: its label, then (images, once drawn) its thumbnail."""

    def __init__(self, record: dict[str, Any], draw: bool = True) -> None:
        super().__init__(label(record), markup=False, classes="attachment")
        self.record = record
        self.draw = draw and record.get("kind") == "image"
        self.drawn = False  # the thumbnail is on screen (tests wait for it)

    def on_mount(self) -> None:
        if self.draw:
            self._thumbnail(Path(self.record["path"]))

    @work(thread=True, group="thumbnail", exit_on_error=False)
    def _thumbnail(self, path: Path) -> None:
        try:
            picture = half_blocks(path)
        except Exception as exc:  # noqa: BLE001  a deleted copy, Pillow missing: the label says so
            text = Text(f"{label(self.record)} (not drawn: {str(exc).splitlines()[0][:120]})")
            self.app.call_from_thread(self.update, text)
            return
        shown = Text(label(self.record) + "\n")
        shown.append_text(picture)
        self.app.call_from_thread(self._show, shown)

    def _show(self, shown: Text) -> None:
        self.update(shown)
        self.drawn = True


class AttachmentBar(Static):
    """Above the prompt: the images the next message carries."""

    def show(self, records: list[dict[str, Any]]) -> None:
        self.display = bool(records)
        if records:
            names = "  ".join(label(r) for r in records)
            self.update(Text(f"attached: {names}  · sent with your next message · /image off removes",
                             no_wrap=True, overflow="ellipsis"))
