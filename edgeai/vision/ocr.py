"""Text in an image: RapidOCR (PP-OCR detection + recognition, ONNX models inside its wheel), its
boxes grouped into lines in reading order.

Boundary: an RGB Pillow image in, an `OcrResult` out (lines of text with boxes and confidences,
top to bottom, left to right). rapidocr (and onnxruntime, OpenCV, numpy under it) is imported on
first use; the engine is created once per process and reused, since creating it loads three
ONNX sessions (~1-2 s) and an OCR call is the expensive part of looking at an image.

Reading order: RapidOCR returns text boxes, not lines; a receipt's "TOTAL" and its amount are two
boxes far apart on one row. Boxes whose vertical extents overlap by at least half the smaller
height join one line (ordered by x); lines are ordered by their top. Two columns side by side
therefore read across, row by row: right for receipts, forms and tables, wrong for a two-column
article (a known limit).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edgeai.errors import EdgeAIError, MissingExtra

if TYPE_CHECKING:
    from PIL.Image import Image

INSTALL = "pip install 'edgeai[vision]'"
# RapidOCR shrinks anything longer than this (its Global.max_side_len) before detection: shrinking
# first with Pillow gives it the same pixels without its copies of a 40 MP array through numpy and
# OpenCV (~120 MB each; peak RSS of `see` on a blank 44 MP PNG: 1.07 -> 0.95 GB)
OCR_MAX_SIDE = 2000
# two boxes are on one line when their vertical overlap is at least this share of the smaller height
SAME_LINE_OVERLAP = 0.5

Box = tuple[int, int, int, int]  # left, top, right, bottom in the original image's pixels


@dataclass(frozen=True)
class TextBox:
    """One box RapidOCR found: a word or a run of words."""

    text: str
    box: Box
    confidence: float


@dataclass(frozen=True)
class TextLine:
    text: str  # the boxes' text joined by a space, left to right
    box: Box
    confidence: float  # the least sure box's: a line is only as readable as its worst part
    boxes: tuple[TextBox, ...]


@dataclass(frozen=True)
class OcrResult:
    lines: tuple[TextLine, ...]
    seconds: float = 0.0

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)

    @property
    def words(self) -> int:
        return sum(len(line.text.split()) for line in self.lines)


_engine = None
# one lock for creating and for calling: RapidOCR keeps per-call parameters on the engine
# object, so two threads (the chat's worker and a RAG ingest) must not run it at once
_lock = threading.Lock()


def engine():
    """The process's RapidOCR engine, created on first use."""
    global _engine
    with _lock:
        if _engine is None:
            _engine = _create()
        return _engine


def _create():
    try:
        from rapidocr import RapidOCR
    except ImportError as exc:
        raise MissingExtra(f"OCR (rapidocr and onnxruntime) [{exc}]", INSTALL) from None
    try:
        # models from the wheel (no download); only errors logged, so stdout stays the command's
        return RapidOCR(params={"Global.log_level": "error"})
    except ImportError as exc:  # onnxruntime is imported when the sessions are built
        raise MissingExtra(f"OCR's runtime (onnxruntime) [{exc}]", INSTALL) from None
    except Exception as exc:
        raise EdgeAIError(f"the OCR engine could not start: {type(exc).__name__}: {exc}") from exc


def read_text(image: Image, scale: float = 1.0) -> OcrResult:
    """OCR `image` (RGB). `scale` = analysed pixels per original pixel (`ImageFacts.scale`): boxes
    come back in the original image's pixels."""
    ocr = engine()
    started = time.perf_counter()
    if max(image.size) > OCR_MAX_SIDE:
        shrink = OCR_MAX_SIDE / max(image.size)
        image = image.resize((max(1, round(image.width * shrink)), max(1, round(image.height * shrink))),
                             reducing_gap=2.0)
        scale *= shrink
    with _lock:
        output = ocr(image)
    seconds = time.perf_counter() - started
    if output.boxes is None or output.txts is None:
        return OcrResult((), seconds)
    boxes = []
    for quad, text, score in zip(output.boxes, output.txts, output.scores, strict=True):
        text = str(text).strip()
        if not text:
            continue
        xs, ys = [p[0] / scale for p in quad], [p[1] / scale for p in quad]
        boxes.append(TextBox(text, (round(min(xs)), round(min(ys)), round(max(xs)), round(max(ys))),
                             round(float(score), 4)))
    return OcrResult(group_lines(boxes), seconds)


def group_lines(boxes: Sequence[TextBox]) -> tuple[TextLine, ...]:
    """Boxes -> lines in reading order (see the module docstring)."""
    rows: list[list[TextBox]] = []
    for box in sorted(boxes, key=lambda b: (b.box[1] + b.box[3]) / 2):
        best, best_overlap = None, SAME_LINE_OVERLAP
        for row in rows:
            overlap = _overlap(box, row)
            if overlap >= best_overlap and not _collides(box, row):
                best, best_overlap = row, overlap
        if best is None:
            rows.append([box])
        else:
            best.append(box)
    lines = [_line(sorted(row, key=lambda b: b.box[0])) for row in rows]
    return tuple(sorted(lines, key=lambda line: (line.box[1], line.box[0])))


def _overlap(box: TextBox, row: list[TextBox]) -> float:
    """The vertical overlap of `box` with the row's band (mean top..mean bottom), as a share of
    the smaller height. The mean, not the union: a union would grow with each box on a skewed
    photo until it swallowed the next line."""
    top = sum(b.box[1] for b in row) / len(row)
    bottom = sum(b.box[3] for b in row) / len(row)
    shared = min(box.box[3], bottom) - max(box.box[1], top)
    smaller = min(box.box[3] - box.box[1], bottom - top)
    return shared / smaller if smaller > 0 else 0.0


def _collides(box: TextBox, row: list[TextBox]) -> bool:
    """Boxes of one line never overlap left to right by more than a few pixels; stacked ones do."""
    width = box.box[2] - box.box[0]
    for other in row:
        shared = min(box.box[2], other.box[2]) - max(box.box[0], other.box[0])
        if shared > 0.3 * min(width, other.box[2] - other.box[0]):
            return True
    return False


def _line(row: list[TextBox]) -> TextLine:
    box = (min(b.box[0] for b in row), min(b.box[1] for b in row),
           max(b.box[2] for b in row), max(b.box[3] for b in row))
    return TextLine(" ".join(b.text for b in row), box, min(b.confidence for b in row), tuple(row))
