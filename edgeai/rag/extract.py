"""A file -> its text as `Section`s, with where each came from (page, heading path, lines, time).

The boundary: this module picks the extractor (by suffix, else by sniffing the first bytes),
enforces the size cap and turns OS errors into one-line `ExtractError`s; the format modules in
`edgeai.rag.extractors` do the reading. Nothing here is split to a token budget: that is
`edgeai.rag.chunk`'s job. Scanned PDF pages and images are read by OCR (`extractors.ocr`, on
`edgeai.vision`), audio files by speech to text (`extractors.audio`, on `edgeai.speech`); their
stacks are imported only when such a file is read.

Contract of `iter_sections` (a generator: nothing happens until the first `next()`):
- a file that cannot be indexed raises `ExtractError` (a `BadInput`) whose message is one line
  naming the file and the reason ("notes.txt: looks binary, skipped"), `reason` a short code;
  it may come after some sections were yielded (a corrupt page, a file deleted mid-read), so a
  caller stores a file's passages only once its iteration finished;
- a file that can be indexed with a caveat (not UTF-8, some pages unreadable) yields its
  sections and reports the caveat once through `on_notice(message)`; without a callback the
  notice goes to the `edgeai.rag` logger;
- the slow formats (OCR, speech) say how far they are through `on_progress(detail)`
  ("OCR page 3/12", "speech 1:20/4:05"), so a progress bar moves during a long file.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from edgeai.errors import BadInput

Notice = Callable[[str], None]
ProgressNote = Callable[[str], None]

TEXT_SUFFIXES = frozenset({".txt", ".text", ".md", ".markdown", ".rst", ".log"})
# read by OCR (an image is page 1); .heic is listed so it gets Pillow's one-line refusal, not "binary"
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".heic"})
# read by speech to text (PyAV decodes them all); video containers are left out on purpose
AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac"})
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | {".pdf", ".html", ".htm", ".docx"} | IMAGE_SUFFIXES | AUDIO_SUFFIXES
_FORMATS = {".md": "markdown", ".markdown": "markdown", ".pdf": "pdf", ".html": "html", ".htm": "html",
            ".docx": "docx", **dict.fromkeys(IMAGE_SUFFIXES, "image"),
            **dict.fromkeys(AUDIO_SUFFIXES, "audio")}
_UNSUPPORTED = {".doc": "old Word .doc format is not supported: save it as .docx"}
_MAGIC = ((b"%PDF-", "pdf"), (b"\x89PNG", "image"), (b"\xff\xd8\xff", "image"), (b"GIF8", "image"),
          (b"II*\x00", "image"), (b"MM\x00*", "image"),
          (b"fLaC", "audio"), (b"OggS", "audio"), (b"ID3\x02", "audio"), (b"ID3\x03", "audio"),
          (b"ID3\x04", "audio"))
# the extractors that report progress (slow: seconds per page, a fraction of real time per second)
_SLOW = frozenset({"pdf", "image", "audio"})
MB = 1 << 20
_log = logging.getLogger("edgeai.rag")


@dataclass(frozen=True)
class Section:
    """A piece of a file's text that belongs together: a paragraph, a code block, a table, a page.

    `heading` is the path of headings above it ("Install > Linux"); `page` is 1-based (PDF; an
    image is page 1); `line_start`/`line_end` are 1-based and inclusive (text and Markdown files);
    `t_start`/`t_end` are seconds from the start of an audio file.
    """

    text: str
    kind: str = "paragraph"  # paragraph, list, quote, code, table, page
    page: int | None = None
    heading: str | None = None
    line_start: int | None = None
    line_end: int | None = None
    t_start: float | None = None
    t_end: float | None = None


class ExtractError(BadInput):
    """A file that cannot be indexed; `reason` is one of: missing, unreadable, too_large, empty,
    binary, encrypted, no_text, corrupt, unsupported, missing_extra."""

    def __init__(self, path: Path, reason: str, what: str, hint: str | None = None):
        super().__init__(f"{path}: {what}", hint)
        self.path = Path(path)
        self.reason = reason


def iter_sections(path: Path, *, max_bytes: int | None = None, on_notice: Notice | None = None,
                  on_progress: ProgressNote | None = None) -> Iterator[Section]:
    """The sections of one file, in document order (see the module docstring for errors)."""
    path = Path(path)

    def notice(message: str) -> None:
        (on_notice or _log.warning)(f"{path}: {message}")

    try:
        size = checked_size(path, max_bytes)
        fmt = _format_of(path)
        yielded = 0
        extractor = _extractor(fmt)
        sections = (extractor(path, notice, on_progress or (lambda detail: None)) if fmt in _SLOW
                    else extractor(path, notice))
        for section in sections:
            yielded += 1
            yield section
    except FileNotFoundError as exc:
        raise ExtractError(path, "missing", "vanished before it could be read (moved or deleted?)") from exc
    except PermissionError as exc:
        raise ExtractError(path, "unreadable", "cannot be read: permission denied") from exc
    except IsADirectoryError as exc:
        raise ExtractError(path, "unsupported", "is a folder, not a file") from exc
    except OSError as exc:
        raise ExtractError(path, "unreadable", f"cannot be read: {exc.strerror or exc}") from exc
    if not yielded:
        if fmt == "pdf":
            raise ExtractError(path, "no_text", "no text layer, and OCR found no text: nothing to index")
        if fmt == "image":
            raise ExtractError(path, "empty", "no text found in the image, nothing to index")
        if fmt == "audio":
            raise ExtractError(path, "empty", "no speech found in it, nothing to index")
        raise ExtractError(path, "empty", "no text in it, nothing to index" if size else
                           "empty, nothing to index")


def is_slow(path: Path) -> bool:
    """Whether reading `path` may run OCR or speech to text (a PDF, an image, audio): seconds to
    minutes, which a caller should not spend inside a write transaction."""
    try:
        return _format_of(Path(path)) in _SLOW
    except (OSError, ExtractError):
        return False


def checked_size(path: Path, max_bytes: int | None) -> int:
    if not path.exists():
        raise FileNotFoundError(path)
    if path.is_dir():
        raise IsADirectoryError(path)
    size = path.stat().st_size
    if max_bytes is not None and size > max_bytes:
        raise ExtractError(path, "too_large", f"larger than the {human_size(max_bytes)} cap "
                           f"({human_size(size)}); raise --max-file-mb to index it")
    if size == 0:
        raise ExtractError(path, "empty", "empty, nothing to index")
    return size


def human_size(n: int) -> str:
    """1.5 GB, 200 MB, 20 KB: what a user compares with the files in their folder."""
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} bytes"


def clock(seconds: float | None) -> str:
    """0:42, 12:05, 1:02:09: a position in an audio file as a player shows it."""
    total = max(0, int(seconds or 0))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def time_span(start: float, end: float | None) -> str:
    """'at 0:42–0:51' (or 'at 0:42'): where a passage of a recording is, for its citation. The
    end rounds up, so the span a person seeks to covers the whole passage (35.6 s shows 0:36)."""
    a, b = clock(start), clock(math.ceil(end) if end is not None else start)
    return f"at {a}" if a == b else f"at {a}–{b}"


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in _UNSUPPORTED:
        raise ExtractError(path, "unsupported", _UNSUPPORTED[suffix])
    if suffix in _FORMATS:
        return _FORMATS[suffix]
    if suffix in TEXT_SUFFIXES:
        return "text"
    # unknown suffix: PDFs and images by their magic bytes, anything else is read as text
    # (the text extractor refuses binary with a clear reason)
    with path.open("rb") as handle:
        head = handle.read(16)
    if head.startswith(b"RIFF"):  # one container, two kinds: WAVE audio or WEBP images
        return {b"WAVE": "audio", b"WEBP": "image"}.get(head[8:12], "text")
    for magic, fmt in _MAGIC:
        if head.startswith(magic):
            return fmt
    return "text"


def _extractor(fmt: str) -> Callable[[Path, Notice], Iterator[Section]]:
    if fmt == "markdown":
        from edgeai.rag.extractors.markdown import extract
    elif fmt == "pdf":
        from edgeai.rag.extractors.pdf import extract
    elif fmt == "html":
        from edgeai.rag.extractors.html import extract
    elif fmt == "docx":
        from edgeai.rag.extractors.docx import extract
    elif fmt == "image":
        from edgeai.rag.extractors.image import extract
    elif fmt == "audio":
        from edgeai.rag.extractors.audio import extract
    else:
        from edgeai.rag.extractors.text import extract
    return extract
