"""An audio file (wav, flac, ogg, mp3, m4a...) -> its speech as text, one section per segment,
each with its start and end in seconds, so a citation can say "at 0:42–0:51".

The boundary: decoding, windows for long files, VAD and the engines are `edgeai.speech.stt`
(`get_engine`, `transcribe`); this module picks the model, keeps one engine per process and
turns the speech stack's one-line errors into `ExtractError`s. faster-whisper, CTranslate2 and
PyAV are imported at the first audio file, never before.

The model is the product's default, whisper-base, decoded greedily (beam 1). Not tiny.en: a
folder of recordings may hold other languages, which base detects per file and an English-only
model turns into confident nonsense; and the index is built once per file (unchanged files are
skipped by content hash) but searched many times, so its words are worth base's accuracy (on
piper-spoken sentences: "logged 42 ships" where tiny.en heard "walked"). Beam 1 instead of 5:
the same text on those sentences at ~0.8x the time; a word or two of difference moves a
passage's vector far less than it moves a transcript's WER. Word timestamps are on (~25% more
time): a citation's span is taken from the words, since Whisper's segment edges stretch over
pauses (a sentence after 25 s of silence was placed at 0:07 instead of 0:32 without them).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

from edgeai.errors import BadInput, EdgeAIError
from edgeai.rag.extract import ExtractError, Notice, ProgressNote, Section, clock
from edgeai.rag.extractors.image import without_name

STT_MODEL = "whisper-base"
BEAM_SIZE = 1

_engines: dict[str, object] = {}
_broken: dict[str, EdgeAIError] = {}
_lock = threading.Lock()


def extract(path: Path, notice: Notice, progress: ProgressNote) -> Iterator[Section]:
    from edgeai.speech.audio import probe
    from edgeai.speech.stt import Options, transcribe

    try:
        probe(path)  # a non-audio file is refused before the model loads
    except BadInput as exc:
        raise ExtractError(path, "corrupt", without_name(exc.message, path), exc.hint) from None
    engine = _engine(path)

    def report(done: float, total: float | None) -> None:
        progress(f"speech {clock(done)}/{clock(total)}" if total else f"speech {clock(done)}")

    try:
        transcript = transcribe(engine, path, Options(beam_size=BEAM_SIZE, words=True), progress=report)
    except BadInput as exc:  # no samples, a stream that breaks off mid-file
        reason = "empty" if "zero-length" in exc.message else "corrupt"
        raise ExtractError(path, reason, without_name(exc.message, path), exc.hint) from None
    for segment in transcript.segments:
        text = segment.text.strip()
        if text:
            # the words' own times: a segment's edges drift into the silence around it (by 25 s
            # before a pause, measured), its first word's start and last word's end do not
            start = segment.words[0].start if segment.words else segment.start
            end = segment.words[-1].end if segment.words else segment.end
            yield Section(text, "paragraph", t_start=round(start, 2), t_end=round(end, 2))


def _engine(path: Path):
    """The process's engine on `STT_MODEL`, loaded once (a second or two; the model stays)."""
    with _lock:
        if STT_MODEL in _broken:  # the install, not the file: the next file is told at once
            raise _unavailable(path, _broken[STT_MODEL])
        if STT_MODEL not in _engines:
            from edgeai.speech.stt import get_engine

            try:
                _engines[STT_MODEL] = get_engine(model=STT_MODEL)
            except (EdgeAIError, ImportError) as exc:
                # MissingExtra, a model that is not installed, a broken engine; an ImportError from
                # the engine's own constructor (it imports faster_whisper there, not at import)
                if not isinstance(exc, EdgeAIError):
                    exc = EdgeAIError(f"the speech engine cannot be imported here [{exc}]")
                _broken[STT_MODEL] = exc
                raise _unavailable(path, exc) from None
        return _engines[STT_MODEL]


def _unavailable(path: Path, exc: EdgeAIError) -> ExtractError:
    # the hint goes into the line: `rag add` prints one line per skipped file, what to do included
    hint = exc.hint or "install the speech extra: pip install 'edgeai[speech]'"
    return ExtractError(path, "missing_extra",
                        f"audio: speech to text is not available ({exc.message}; {hint})")
