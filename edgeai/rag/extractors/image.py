"""An image file (png, jpg, webp, tiff, bmp, gif...) -> its text by OCR, as page 1.

The boundary: decoding is `edgeai.vision.image.open_image` (EXIF orientation applied, the 40 MP
cap, a corrupt or unknown file as one line), reading is `extractors.ocr`. An image with no text
yields nothing, which `iter_sections` reports as "no text found in the image, nothing to index".
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from edgeai.errors import BadInput, MissingExtra
from edgeai.rag.extract import ExtractError, Notice, ProgressNote, Section
from edgeai.rag.extractors.ocr import OcrUnavailable, page_text, unavailable


def extract(path: Path, notice: Notice, progress: ProgressNote) -> Iterator[Section]:
    from edgeai.vision.image import open_image

    try:
        opened = open_image(path)
    except BadInput as exc:
        raise ExtractError(path, "corrupt", without_name(exc.message, path), exc.hint) from None
    except MissingExtra as exc:  # no Pillow: the install, not the file
        raise unavailable(path, OcrUnavailable(exc.message, exc.hint), "image") from None
    progress("OCR")
    try:
        text = page_text(opened.image)
    except OcrUnavailable as exc:
        raise unavailable(path, exc, "image") from None
    if text:
        yield Section(text, "page", page=1)


def without_name(message: str, path: Path) -> str:
    """A vision/speech message without the file it starts with, since `ExtractError` puts the path
    first: "x.png is corrupt or truncated: ..." -> "corrupt or truncated: ..."."""
    for name in (str(path), path.name):
        if message.startswith(name):
            return message[len(name):].lstrip(" :").removeprefix("is ")
    return message
