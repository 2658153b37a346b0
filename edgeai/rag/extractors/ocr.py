"""OCR for indexing: a page image -> its text in paragraphs, for scanned PDF pages and image files.

The boundary: an RGB Pillow image in, text out (lines in reading order, a blank line where the
gap between two lines says a new paragraph starts), or `OcrUnavailable` when OCR cannot run
here (`unavailable` makes it the file's one-line `ExtractError`). The OCR itself
is `edgeai.vision.ocr` (RapidOCR, one engine per process, created on first use); this module only
prepares the pixels and shapes the text for the chunker. Nothing heavy is imported at module
level: Pillow comes with the image, rapidocr with the first call to `page_text`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from edgeai.errors import EdgeAIError
from edgeai.rag.extract import ExtractError
from edgeai.vision.ocr import OCR_MAX_SIDE  # a constant: edgeai.vision.ocr imports nothing heavy

if TYPE_CHECKING:
    from PIL.Image import Image

# A scanned page is rendered at this resolution: 12 pt body text comes out ~30 px tall, where
# PP-OCR's detector and recognizer are at their best; more costs seconds and reads no better.
# It is never rendered with a side longer than OCR_MAX_SIDE, RapidOCR's working size: it would
# shrink the page to that anyway.
OCR_DPI = 200

# RapidOCR's detector enlarges an image whose shorter side is below this (its Det.limit_side_len,
# limit_type "min"): a page strip cropped to its text (857x152 px) would become 4150x736 and take
# 4x as long as the whole page. A crop is padded with white to this instead, so the text is
# detected at the size it has (10 px text still reads: the corpus's photo.png).
DET_MIN_SIDE = 736
# a pixel at least this much darker than white (0-255) is ink when cropping: scanned paper is
# rarely whiter than ~240, light grey print is still darker than ~220
_INK = 32
_MARGIN = 16  # pixels kept around the content: the detector needs a little white around glyphs
# a gap between two lines larger than this share of the line height starts a new paragraph
_PARAGRAPH_GAP = 0.8


def render_scale(width_pt: float, height_pt: float) -> float:
    """Pixels per PDF point for a page of this size: `OCR_DPI`, capped so the longest side fits
    `OCR_MAX_SIDE` (a poster-sized page is not rendered at poster size)."""
    return min(OCR_DPI / 72, OCR_MAX_SIDE / max(width_pt, height_pt, 1.0))


def page_text(image: Image) -> str:
    """The text OCR reads in `image` (RGB), paragraphs separated by a blank line; '' for none.
    The image is cut to its ink and padded (`DET_MIN_SIDE`) first: on a 480x120 PNG of 10 px
    text that reads the same words in a fifth of the time the whole image took (the detector
    enlarged it 6x). Raises `OcrUnavailable` when OCR is not installed or cannot start (the
    caller names the file: `unavailable`)."""
    global _broken
    box = _ink_box(image)
    if box is None:  # a blank page: nothing for the detector to find, and seconds saved
        return ""
    image = _padded(image.crop(box))
    if _broken is not None:
        raise _broken
    from edgeai.vision.ocr import read_text

    try:
        result = read_text(image)
    except EdgeAIError as exc:  # MissingExtra, or the engine could not start
        # a property of the install, not of the file: the next file is refused at once, not
        # after another second or two of trying to build the engine
        _broken = OcrUnavailable(exc.message, exc.hint)
        raise _broken from None
    return _paragraphs(result.lines)


class OcrUnavailable(EdgeAIError):
    """OCR cannot run here (rapidocr/onnxruntime missing or broken): a property of the install,
    not of the file."""


_broken: OcrUnavailable | None = None


def unavailable(path: Path, exc: OcrUnavailable, what: str) -> ExtractError:
    # the hint goes into the line: `rag add` prints one line per skipped file, what to install included
    hint = f"; {exc.hint}" if exc.hint else ""
    return ExtractError(path, "missing_extra", f"{what}: OCR is not available ({exc.message}{hint})")


def _ink_box(image: Image) -> tuple[int, int, int, int] | None:
    """The box around the image's ink plus a margin, or None when it holds none. The detector's
    time grows with the pixels it is given, and most of a page is white margin."""
    from PIL import ImageOps

    ink = ImageOps.invert(image.convert("L")).point(lambda v: 255 if v > _INK else 0)
    box = ink.getbbox()
    if box is None:
        return None
    left, top, right, bottom = box
    return (max(0, left - _MARGIN), max(0, top - _MARGIN),
            min(image.width, right + _MARGIN), min(image.height, bottom + _MARGIN))


def _padded(image: Image) -> Image:
    """`image` on a white canvas at least `DET_MIN_SIDE` on its shorter side (see there)."""
    if min(image.size) >= DET_MIN_SIDE:
        return image
    from PIL import Image as PILImage

    canvas = PILImage.new("RGB", (max(image.width, DET_MIN_SIDE), max(image.height, DET_MIN_SIDE)), "white")
    canvas.paste(image, (0, 0))
    return canvas


def _paragraphs(lines) -> str:
    """OCR lines -> text: one line each, a blank line where the vertical gap says a new paragraph
    starts, so the chunker cuts between paragraphs rather than mid-thought."""
    if not lines:
        return ""
    heights = sorted(line.box[3] - line.box[1] for line in lines)
    height = max(1, heights[len(heights) // 2])
    out = [lines[0].text]
    for prev, line in zip(lines, lines[1:], strict=False):
        if line.box[1] - prev.box[3] > _PARAGRAPH_GAP * height:
            out.append("")
        out.append(line.text)
    return "\n".join(out).strip()
