"""Speech to text: the engine registry, the options, the `Transcript`, and long files in windows.

Boundary: an audio path (or a 16 kHz mono float32 array) + a model id + an engine name in, a
`Transcript` out. Engines are "module:Class" strings imported only when chosen, like the
embedder registry (`edgeai/rag/embed.py`), so nothing here pulls numpy, ctranslate2 or torch.
An engine only decodes an array (`Engine.decode`); reading files, windows, time offsets,
language fixing, progress and the real-time factor are done here once for every engine.

A long file is never decoded whole: it is read block by block (`audio.iter_audio`) into
windows of `WINDOW_S` seconds, each cut at the quietest tenth of a second near its end (so no
word is split), transcribed, and dropped. Memory is one window (19 MB at 300 s) plus the model,
whatever the file's length. A file shorter than a window is one call, exactly what the engine
would do alone.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from edgeai.config import Settings
from edgeai.errors import BadInput, EdgeAIError

ENGINES: dict[str, str] = {
    "faster-whisper": "edgeai.speech.engine_faster:FasterWhisperEngine",
    "openai-whisper": "edgeai.speech.engine_openai:OpenAIWhisperEngine",
}
DEFAULT_ENGINE = "faster-whisper"
DEFAULT_MODEL = "whisper-base"
SMALL_MODEL = "whisper-tiny.en"
WINDOW_S = 300.0  # seconds of audio held at once for a long file
CUT_SEARCH_S = 10.0  # where in a window's tail the quietest point is looked for
AUTO_VAD_S = 30.0  # audio longer than one Whisper window gets the VAD unless told otherwise

Progress = Callable[[float, "float | None"], None]  # (seconds done, seconds in all or None)


@dataclass(frozen=True)
class Options:
    language: str | None = None  # None: detected (from the first window that holds speech)
    translate: bool = False  # task=translate: the text comes out in English
    beam_size: int = 5  # faster-whisper's and the whisper CLI's default; 1 = greedy
    vad: bool | None = None  # Silero VAD drops silence; None: on for audio over AUTO_VAD_S
    words: bool = False  # word timestamps

    def __post_init__(self) -> None:
        if self.beam_size < 1:
            raise BadInput(f"beam size must be at least 1, got {self.beam_size}")
        if self.language is not None and not self.language.isalpha():
            raise BadInput(f"--language takes a code like en or de, got {self.language!r}")


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    word: str
    probability: float


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()

    def shifted(self, offset: float) -> Segment:
        if not offset:
            return self
        words = tuple(Word(w.start + offset, w.end + offset, w.word, w.probability) for w in self.words)
        return Segment(self.start + offset, self.end + offset, self.text, words)


@dataclass(frozen=True)
class Decoded:
    """One engine call's result: segments in seconds from the start of the array it was given."""
    language: str
    segments: Iterable[Segment]  # may be lazy: the engine decodes as it is read
    language_probability: float | None = None


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str
    segments: tuple[Segment, ...]
    engine: str
    model: str
    duration: float  # seconds of audio
    seconds: float  # processing time (decoding the file included, loading the model not)
    language_probability: float | None = None
    task: str = "transcribe"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rtf(self) -> float:
        """Real-time factor: processing seconds per second of audio (below 1 = faster than real time)."""
        return self.seconds / self.duration if self.duration else 0.0

    def to_dict(self, words: bool = False) -> dict[str, Any]:
        def seg(s: Segment) -> dict[str, Any]:
            row: dict[str, Any] = {"start": round(s.start, 3), "end": round(s.end, 3), "text": s.text.strip()}
            if words:
                row["words"] = [{"start": round(w.start, 3), "end": round(w.end, 3), "word": w.word.strip(),
                                 "probability": round(w.probability, 4)} for w in s.words]
            return row

        return {"text": self.text, "language": self.language, "segments": [seg(s) for s in self.segments],
                "engine": self.engine, "model": self.model, "rtf": round(self.rtf, 4),
                "duration": round(self.duration, 3)}


class Engine(Protocol):
    name: str  # registry name
    model: str  # catalog id (or folder name)
    multilingual: bool

    def decode(self, audio: Any, options: Options, language: str | None) -> Decoded: ...


@dataclass(frozen=True)
class ModelFiles:
    id: str
    folder: Path  # a CTranslate2 Whisper folder: model.bin, config.json, tokenizer.json, vocabulary.txt
    sha256: str | None  # of model.bin, when the resolver verified it


def model_files(model: str, settings: Settings,
                progress: Callable[[int, int], None] | None = None) -> ModelFiles:
    """A catalog id (assembled once, sha256 checked) or a CTranslate2 Whisper folder -> its files."""
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "model.bin").is_file():
            raise BadInput(f"{path} is not a CTranslate2 Whisper folder (no model.bin)")
        return ModelFiles(path.name, path.resolve(), None)
    from edgeai.models import resolve
    from edgeai.models.resolve import read_stamp

    spec = resolve(model, settings, progress)
    main = spec.artifacts.get("ct2")
    if main is None:
        raise BadInput(f"{model} is not a speech-to-text model",
                       "use whisper-base or whisper-tiny.en (see `edgeai models list`)")
    stamp = read_stamp(Path(main)) or {}
    return ModelFiles(spec.id.partition(":")[0], Path(main).parent, stamp.get("sha256"))


def get_engine(name: str = DEFAULT_ENGINE, model: str = DEFAULT_MODEL, settings: Settings | None = None,
               threads: int | None = None, progress: Callable[[int, int], None] | None = None) -> Engine:
    """A loaded engine by registry name on a model id or folder."""
    target = ENGINES.get(name)
    if target is None:
        raise BadInput(f"unknown speech engine {name!r}", f"known engines: {', '.join(sorted(ENGINES))}")
    if settings is None:
        from edgeai.config import load_settings

        settings = load_settings()
    files = model_files(model, settings, progress)
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise EdgeAIError(f"speech engine {name!r} cannot be imported here: {exc}",
                          "install the speech extra: pip install 'edgeai[speech]'") from exc
    from edgeai.config import default_threads

    return getattr(module, attr)(files, threads or settings.threads or default_threads(), settings)


def check_options(engine: Engine, options: Options) -> None:
    """What an English-only model cannot do, said before any audio is read."""
    if engine.multilingual:
        return
    if options.translate:
        raise BadInput(f"{engine.model} is English-only: it cannot translate",
                       "use a multilingual model: --model whisper-base")
    if options.language not in (None, "en"):
        raise BadInput(f"{engine.model} is English-only: it cannot transcribe {options.language!r}",
                       "use a multilingual model: --model whisper-base")


def transcribe(engine: Engine, audio: str | Path | Any, options: Options | None = None,
               progress: Progress | None = None) -> Transcript:
    """A file (read in windows) or a 16 kHz mono float32 array -> its `Transcript`."""
    from edgeai.speech.audio import RATE, probe

    options = options or Options()
    check_options(engine, options)
    start = time.perf_counter()
    if isinstance(audio, (str, Path)):
        total = probe(audio).duration
        windows: Iterable[tuple[float, Any]] = _windows(audio)
    else:
        total = len(audio) / RATE
        if not len(audio):
            raise BadInput("no audio samples to transcribe (zero-length audio)")
        windows = [(0.0, audio)]
    segments: list[Segment] = []
    language, probability, done = options.language, None, 0.0
    for offset, chunk in windows:
        length = len(chunk) / RATE
        vad = options.vad if options.vad is not None else max(length, total or 0.0) > AUTO_VAD_S
        decoded = engine.decode(chunk, _with_vad(options, vad), language)
        found = 0
        for seg in decoded.segments:
            segments.append(seg.shifted(offset))
            found += 1
            if progress:
                progress(min(offset + seg.end, offset + length), total)
        if found and language is None:  # the first window with speech decides for the rest
            language, probability = decoded.language, decoded.language_probability
        done = offset + length
        if progress:
            progress(done, total)
    return Transcript(
        text=" ".join(s.text.strip() for s in segments if s.text.strip()),
        language=language or (decoded.language if done else "en"), segments=tuple(segments),
        engine=engine.name, model=engine.model, duration=done, seconds=time.perf_counter() - start,
        language_probability=probability if probability is not None else decoded.language_probability,
        task="translate" if options.translate else "transcribe")


def _with_vad(options: Options, vad: bool) -> Options:
    from dataclasses import replace

    return options if options.vad == vad else replace(options, vad=vad)


def _windows(path: str | Path, window_s: float | None = None, search_s: float = CUT_SEARCH_S,
             block_s: float = 10.0) -> Iterator[tuple[float, Any]]:
    """(offset seconds, samples) windows of about `window_s` (default WINDOW_S), each cut at the
    quietest 0.1 s of its last `search_s` seconds: a cut in silence splits no word."""
    import numpy as np

    from edgeai.speech.audio import RATE, iter_audio

    limit = int((window_s or WINDOW_S) * RATE)
    held: list[Any] = []
    count = 0
    offset = 0
    for block in iter_audio(path, block_s):
        held.append(block)
        count += len(block)
        if count < limit:
            continue
        window = np.concatenate(held)
        cut = quiet_point(window, max(0, len(window) - int(search_s * RATE)))
        yield offset / RATE, window[:cut]
        offset += cut
        rest = window[cut:]
        held, count = ([rest] if len(rest) else []), len(rest)
        del window
    if count:
        yield offset / RATE, np.concatenate(held)


def quiet_point(samples: Any, search_from: int, frame: int = 1600) -> int:
    """The sample index starting the lowest-energy `frame` (0.1 s) at or after `search_from`."""
    import numpy as np

    tail = samples[search_from:]
    n = len(tail) // frame
    if n == 0:
        return len(samples)
    energy = np.square(tail[: n * frame].reshape(n, frame)).sum(axis=1)
    return search_from + int(np.argmin(energy)) * frame + frame // 2
