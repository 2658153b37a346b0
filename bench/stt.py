"""The `stt` suite: `edgeai bench stt`. Speed (real-time factor) and accuracy (word error rate)
of every speech engine and model on the same clips, plus the two checks of issue #15.

- Clips: the committed evaluation set (`bench/texts.SENTENCES`), each spoken once by piper's
  joe into a WAV in a temp folder for this run, and any files the user passes (reference text
  from a sibling `.txt`, else no WER). Piper samples noise inside its network, so a sentence is
  synthesized once and that same WAV is heard by every engine, model, beam and repeat.
- Every clip is decoded once, by edgeai's reader (`speech.audio.read_audio`: 16 kHz mono
  float32), and that same array goes to every engine, so all of them hear identical samples.
  (faster-whisper's own file reader resamples through 16-bit integers: on a path it hears
  slightly different samples, and base's greedy text changed on 4 of 12 sentences that way.)
- Per engine x model x beam: RTF = seconds in `stt.transcribe(engine, samples)` (the model
  load and the file decoding not included) / seconds of audio, over clips and repeats; WER per
  clip after openai-whisper's normalizer (`edgeai/speech/wer.py`) and its mean over the clips.
- edgeai vs faster-whisper called directly: `faster_whisper.WhisperModel` on the same model
  folder with the compute type, threads, beam, VAD rule and language edgeai uses, given the
  same array, timed around the call and the reading of its segments. Each clip's two runs are
  back to back, their order alternating (ABBA over clips and repeats), so a busy machine slows
  both alike; the overhead is the median of the per-pair ratios. Same input, same settings:
  the two texts must match (`same_text`).
- Agreement: openai-whisper (on the checkpoint converted from the same CT2 weights) vs
  faster-whisper, per sentence, at each beam both ran (issue #15 asks for beam 1).

Boundary: engines come from `edgeai.speech.stt`, voices from `edgeai.speech.tts`, rows go into
the schema-v1 result (suite "stt"); the CLI (`edgeai/cli/bench.py`) prints `report(result)`.
Nothing heavy is imported at module level.
"""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeai.errors import BadInput, EdgeAIError

ENGINES = ("faster-whisper", "openai-whisper")
MODELS = ("whisper-base", "whisper-tiny.en")
DIRECT = "faster-whisper-direct"  # the backend name of the reference rows
SHORT = {"faster-whisper": "fw", "openai-whisper": "ow", DIRECT: "fw-direct",
         "whisper-base": "base", "whisper-tiny.en": "tiny.en"}


@dataclass(frozen=True)
class Clip:
    name: str  # "s01".."s12" for the evaluation set, else the file's name
    path: Path
    reference: str | None  # what was said; None: no WER for this clip
    seconds: float | None  # what the container says (edgeai's VAD rule reads the same figure)


@dataclass
class Series:
    """One engine x model x beam over the clips: seconds and texts per clip, one per repeat."""
    backend: str
    model: str
    beam: int
    seconds: dict[str, list[float]] = field(default_factory=dict)
    texts: dict[str, list[str]] = field(default_factory=dict)
    audio_s: dict[str, float] = field(default_factory=dict)

    def add(self, clip: Clip, seconds: float, text: str, audio_s: float) -> None:
        self.seconds.setdefault(clip.name, []).append(seconds)
        self.texts.setdefault(clip.name, []).append(text)
        self.audio_s[clip.name] = audio_s

    def rtfs(self) -> list[float]:
        return [s / self.audio_s[c] for c, runs in self.seconds.items() for s in runs if self.audio_s[c]]


# -- clips ------------------------------------------------------------------------------------------
def parse_sentences(spec: str) -> list[int]:
    """--sentences: "all", "none", or 1-based numbers like "4,8" -> 0-based indices."""
    from edgeai.bench.texts import SENTENCES

    spec = spec.strip().lower()
    if spec == "all":
        return list(range(len(SENTENCES)))
    if spec in ("none", "0", ""):
        return []
    try:
        picked = [int(part) for part in spec.split(",") if part.strip()]
    except ValueError:
        raise BadInput(f"--sentences takes all, none or numbers like 4,8, not {spec!r}") from None
    if not picked or any(not 1 <= n <= len(SENTENCES) for n in picked):
        raise BadInput(f"--sentences numbers run from 1 to {len(SENTENCES)}, got {spec!r}")
    return sorted({n - 1 for n in picked})


def user_clips(paths: list[Path]) -> list[Clip]:
    """The user's files, each checked to be audio before any model loads (one BadInput line
    otherwise); the reference is a sibling .txt when there is one."""
    from edgeai.speech.audio import probe

    clips = []
    for path in paths:
        info = probe(path)  # a missing, empty or non-audio file is one line here, not a traceback later
        text = path.with_suffix(".txt")
        reference = text.read_text(encoding="utf-8", errors="replace").strip() if text.is_file() else None
        clips.append(Clip(path.name, path, reference or None, info.duration))
    return clips


def synthesize_clips(indices: list[int], folder: Path, on_tick: Callable[[str], None]) -> list[Clip]:
    """The chosen evaluation sentences spoken by piper's joe, one WAV each, written once."""
    from edgeai.bench.texts import SENTENCES
    from edgeai.speech.tts import load_voice, synthesize, write_wav

    if not indices:
        return []
    voice = load_voice("joe")  # the voice: never espeak-ng, whose WER would mean another thing
    clips = []
    for i in indices:
        path = folder / f"s{i + 1:02d}.wav"
        seconds = write_wav(path, [synthesize(voice, SENTENCES[i])])
        clips.append(Clip(path.stem, path, SENTENCES[i], seconds))
        on_tick(f"synthesized {path.stem}")
    return clips


# -- the two ways of calling faster-whisper ---------------------------------------------------------
class Direct:
    """faster-whisper as its README calls it, on the folder, compute type and threads edgeai's
    engine was given; the VAD and language follow edgeai's rules (`stt.transcribe`) so both
    sides run the same decoding. (A file over `stt.WINDOW_S` is one call here and windows in
    edgeai: the ratio is meant for clips.)"""

    def __init__(self, engine: Any, folder: Path, threads: int):
        from faster_whisper import WhisperModel

        self.compute_type = engine.compute_type
        self.model = WhisperModel(str(folder), device="cpu", compute_type=self.compute_type,
                                  cpu_threads=threads)

    def transcribe(self, samples: Any, beam: int) -> tuple[float, str, float]:
        from edgeai.speech.audio import RATE
        from edgeai.speech.stt import AUTO_VAD_S

        vad = len(samples) / RATE > AUTO_VAD_S  # edgeai's rule: the VAD past one Whisper window
        start = time.perf_counter()
        segments, info = self.model.transcribe(samples, beam_size=beam, language=None,
                                               task="transcribe", vad_filter=vad, word_timestamps=False)
        text = " ".join(s.text.strip() for s in segments if s.text.strip())  # decoding happens here
        return time.perf_counter() - start, text, float(info.duration)


def _timed(engine: Any, samples: Any, beam: int) -> tuple[float, str, float]:
    from edgeai.speech.stt import Options, transcribe

    start = time.perf_counter()
    result = transcribe(engine, samples, Options(beam_size=beam))
    return time.perf_counter() - start, result.text, result.duration


# -- the run ----------------------------------------------------------------------------------------
@contextmanager
def _clip_folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="edgeai-bench-stt-") as folder:
        yield Path(folder)


def steps(n_clips: int, engines: list[str], models: list[str], beams: list[int], repeats: int,
          direct: bool) -> int:
    """Progress ticks of a run: one per timed transcription (+1 per model for loading)."""
    per_clip = len(engines) + (1 if direct and "faster-whisper" in engines else 0)
    return len(models) * (1 + len(beams) * repeats * n_clips * per_clip)


def run_stt(settings, files: list[Path], *, sentences: list[int], engines: list[str], models: list[str],
            beams: list[int], repeats: int = 3, threads: int | None = None, direct: bool = True,
            on_start: Callable[[str, int], None] = lambda name, total: None,
            on_tick: Callable[[str], None] = lambda label: None) -> dict:
    """The whole suite as one schema-v1 result (suite "stt"); `report(result)` is its table."""
    from edgeai import __version__
    from edgeai.bench.device import detect, label
    from edgeai.bench.schema import new_result
    from edgeai.config import default_threads
    from edgeai.memory import peak_rss_mb
    from edgeai.speech.stt import ENGINES as KNOWN

    unknown = [e for e in engines if e not in KNOWN]
    if unknown:
        raise BadInput(f"unknown speech engine {unknown[0]!r}", f"known engines: {', '.join(sorted(KNOWN))}")
    if repeats < 1 or not beams or min(beams) < 1:
        raise BadInput("--repeats and every --beam must be at least 1")
    threads = threads or settings.threads or default_threads()
    given = user_clips(files)  # before anything slow: a bad FILE fails now
    if not given and not sentences:
        raise BadInput("nothing to transcribe: no FILES and --sentences none")
    direct = direct and "faster-whisper" in engines
    device = detect()
    result = new_result("stt", device=device, label=label(device, accelerator=False),
                        settings={"threads": threads, "repeats": repeats, "beams": beams,
                                  "engines": engines, "models": models, "voice": "joe" if sentences else None,
                                  "sentences": [i + 1 for i in sentences], "files": [str(f) for f in files],
                                  "direct": direct, "order": "per clip, edgeai/direct alternating (ABBA)",
                                  # torch's and CTranslate2's OpenMP threads spin or sleep by it
                                  "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY") or "default"},
                        versions=_versions(), source={"tool": "edgeai", "version": __version__})
    with _clip_folder() as folder:
        on_start("stt", len(sentences) + steps(len(sentences) + len(given), engines, models, beams,
                                               repeats, direct))
        clips = synthesize_clips(sentences, folder, on_tick) + given
        result["clips"] = [{"name": c.name, "reference": c.reference,
                            "file": None if c.path.parent == folder else str(c.path)}
                           for c in clips]
        from edgeai.speech.audio import read_audio

        audio = {clip.name: read_audio(clip.path) for clip in clips}  # decoded once, heard by all
        for model in models:
            _run_model(result, settings, model, engines, clips, audio, beams, repeats, threads, direct,
                       on_tick)
    peak = peak_rss_mb()
    for row in result["results"]:
        row["peak_rss_mb"] = peak
    return result


def _load(result: dict, name: str, model: str, settings, threads: int) -> Any | None:
    """A loaded engine, its load time as a row; a missing extra becomes a skipped line."""
    from edgeai.bench.schema import add_row
    from edgeai.speech.stt import get_engine

    start = time.perf_counter()
    try:
        engine = get_engine(name, model, settings, threads=threads)
    except BadInput:
        raise  # an unknown model: the user's mistake, one line
    except EdgeAIError as exc:  # the engine's package is not installed here
        result["skipped"].append({"backend": name, "reason": f"{model}: {exc.message}"})
        return None
    add_row(result, backend=name, model=model, quant=_quant(engine), test="load", unit="s",
            samples=[time.perf_counter() - start], threads=threads)
    return engine


def _quant(engine: Any) -> str:
    return getattr(engine, "compute_type", None) or "float32"  # openai-whisper runs float32 on a CPU


def _run_model(result: dict, settings, model: str, engines: list[str], clips: list[Clip],
               audio: dict[str, Any], beams: list[int], repeats: int, threads: int, direct: bool,
               on_tick: Callable[[str], None]) -> None:
    from edgeai.speech.stt import model_files

    loaded = {name: engine for name in engines
              if (engine := _load(result, name, model, settings, threads)) is not None}
    reference = None
    if direct and "faster-whisper" in loaded:
        reference = Direct(loaded["faster-whisper"], model_files(model, settings).folder, threads)
    on_tick(f"{SHORT.get(model, model)} loaded")
    for beam in beams:
        series = {name: Series(name, model, beam) for name in loaded}
        if reference:
            series[DIRECT] = Series(DIRECT, model, beam)
        pairs: list[float] = []
        # warm-up, untimed: first calls allocate buffers and compile paths
        for engine in loaded.values():
            _timed(engine, audio[clips[0].name], beam)
        if reference:
            reference.transcribe(audio[clips[0].name], beam)
        for rep in range(repeats):
            for k, clip in enumerate(clips):
                for name, engine in loaded.items():
                    if name == "faster-whisper" and reference:
                        direct_first = (rep + k) % 2 == 1
                        pairs.append(_pair(series, engine, reference, clip, audio[clip.name], beam,
                                           direct_first, on_tick))
                        continue
                    series[name].add(clip, *_timed(engine, audio[clip.name], beam))
                    on_tick(f"{SHORT[name]} {SHORT.get(model, model)} b{beam} {clip.name}")
        _add_rows(result, series, loaded, clips, beam, threads, pairs)


def _pair(series: dict[str, Series], engine: Any, reference: Direct, clip: Clip, samples: Any, beam: int,
          direct_first: bool, on_tick: Callable[[str], None]) -> float:
    """edgeai's and the direct call on one clip, back to back: edgeai seconds / direct seconds."""
    runs = {}
    for side in ((DIRECT, "faster-whisper") if direct_first else ("faster-whisper", DIRECT)):
        runs[side] = reference.transcribe(samples, beam) if side == DIRECT else _timed(engine, samples, beam)
        series[side].add(clip, *runs[side])
        on_tick(f"{SHORT[side]} {SHORT.get(series[side].model, series[side].model)} b{beam} {clip.name}")
    return runs["faster-whisper"][0] / runs[DIRECT][0]


# -- rows -------------------------------------------------------------------------------------------
def _add_rows(result: dict, series: dict[str, Series], loaded: dict[str, Any], clips: list[Clip], beam: int,
              threads: int, pairs: list[float]) -> None:
    from edgeai.bench.schema import add_row
    from edgeai.speech.wer import normalize, word_errors

    scored = [c for c in clips if c.reference]
    for name, s in series.items():
        quant = _quant(loaded.get(name) or loaded["faster-whisper"])
        common = {"backend": name, "model": s.model, "quant": quant, "threads": threads, "beam": beam}
        add_row(result, **common, test=f"rtf-beam{beam}", unit="rtf", samples=[round(r, 5) for r in s.rtfs()],
                clips=len(clips), audio_s=round(sum(s.audio_s.values()), 2),
                repeats=len(next(iter(s.seconds.values()))))
        if not scored:
            continue
        per_clip, errors, words = [], 0, 0
        for clip in scored:
            text = s.texts[clip.name][0]
            e, n = word_errors(clip.reference, text)
            errors, words = errors + e, words + n
            per_clip.append({"clip": clip.name, "wer_pct": round(100 * e / max(n, 1), 2), "errors": e,
                             "words": n, "text": text, "varies": len(set(s.texts[clip.name])) > 1})
        wers = [p["wer_pct"] for p in per_clip]
        add_row(result, **common, test=f"wer-beam{beam}", unit="%", samples=wers,
                mean_pct=round(statistics.mean(wers), 2), corpus_pct=round(100 * errors / max(words, 1), 2),
                per_clip=per_clip)
    if pairs:
        mine, theirs = series["faster-whisper"], series[DIRECT]
        same = sum(mine.texts[c.name][0] == theirs.texts[c.name][0] for c in clips)
        add_row(result, backend="faster-whisper", model=mine.model, quant=_quant(loaded["faster-whisper"]),
                threads=threads, beam=beam, test=f"edgeai-vs-direct-beam{beam}", unit="x",
                samples=[round(p, 4) for p in pairs],
                ratio_of_medians=round(statistics.median(mine.rtfs()) / statistics.median(theirs.rtfs()), 4),
                same_text=same, clips=len(clips))
    if "faster-whisper" in series and "openai-whisper" in series:
        fw, ow = series["faster-whisper"], series["openai-whisper"]
        rows = []
        for clip in clips:
            a, b = fw.texts[clip.name][0], ow.texts[clip.name][0]
            rows.append({"clip": clip.name, "identical": a == b, "same_words": normalize(a) == normalize(b),
                         "faster_whisper": a, "openai_whisper": b})
        same = sum(r["same_words"] for r in rows)
        add_row(result, backend="openai-whisper", model=fw.model, quant="float32", threads=threads, beam=beam,
                test=f"agree-beam{beam}", unit="% same", samples=[round(100 * same / len(rows), 2)],
                same_words=same, identical=sum(r["identical"] for r in rows), clips=len(rows),
                differ=[r for r in rows if not (r["same_words"] and r["identical"])])


def _versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {"python": platform.python_version()}
    for dist in ("faster-whisper", "ctranslate2", "openai-whisper", "torch", "piper-tts"):
        try:
            found[dist] = version(dist)
        except PackageNotFoundError:
            found[dist] = None
    from edgeai import __version__

    found["edgeai"] = __version__
    return found


# -- the human table --------------------------------------------------------------------------------
def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}%"


def report(result: dict) -> str:
    """What `edgeai bench stt` prints: RTF and WER per engine x model x beam, WER per clip, the
    edgeai/direct ratio, the openai/faster agreement with the differing texts, skipped engines."""
    from edgeai.bench.compare import pipe_table

    rows = result["results"]
    by = {(r["backend"], r["model"], r["test"]): r for r in rows}
    series = sorted({(r["model"], r["beam"], r["backend"]) for r in rows if r["test"].startswith("rtf-")},
                    key=lambda k: (MODELS.index(k[0]) if k[0] in MODELS else 9, k[0], k[1], k[2]))
    lines = []
    table = []
    for model, beam, backend in series:
        rtf = by[backend, model, f"rtf-beam{beam}"]
        wer = by.get((backend, model, f"wer-beam{beam}"))
        table.append([backend, model, rtf["quant"] or "—", str(beam), f"{rtf['median']:.3f}",
                      f"{rtf['min']:.3f}–{rtf['max']:.3f}", _pct(wer and wer["mean_pct"]),
                      _pct(wer and wer["max"]), _pct(wer and wer["corpus_pct"])])
    if table:
        lines.append(pipe_table(["engine", "model", "quant", "beam", "RTF median", "RTF min–max", "WER mean",
                                 "WER worst", "WER corpus"], table, right={3, 4, 5, 6, 7, 8}))
    wer_rows = [(k, by.get((k[2], k[0], f"wer-beam{k[1]}"))) for k in series]
    wer_rows = [(k, r) for k, r in wer_rows if r]
    if wer_rows:
        clips = [p["clip"] for p in wer_rows[0][1]["per_clip"]]
        header = ["clip"] + [f"{SHORT.get(b, b)} {SHORT.get(m, m)} b{beam}" for (m, beam, b), _ in wer_rows]
        per = {k: {p["clip"]: p["wer_pct"] for p in r["per_clip"]} for k, r in wer_rows}
        body = [[c] + [_pct(per[k].get(c)) for k, _ in wer_rows] for c in clips]
        lines += ["", "WER per clip (normalized):",
                  pipe_table(header, body, right=set(range(1, len(header))))]
    for r in rows:
        if r["test"].startswith("edgeai-vs-direct-"):
            lines.append(f"\nedgeai ÷ direct faster-whisper, {r['model']} beam {r['beam']}: "
                         f"{r['median']:.3f} "
                         f"(median of {len(r['samples'])} interleaved pairs, {r['min']:.3f}–{r['max']:.3f}; "
                         f"ratio of medians {r['ratio_of_medians']:.3f}; same text on "
                         f"{r['same_text']}/{r['clips']} clips)")
    for r in rows:
        if r["test"].startswith("agree-"):
            lines.append(f"\nopenai-whisper vs faster-whisper, {r['model']} beam {r['beam']}: same words on "
                         f"{r['same_words']}/{r['clips']} clips, identical text on "
                         f"{r['identical']}/{r['clips']}")
            for d in r["differ"]:
                kind = "punctuation/case only" if d["same_words"] else "words differ"
                lines += [f"  {d['clip']} ({kind})", f"    faster-whisper: {d['faster_whisper']}",
                          f"    openai-whisper: {d['openai_whisper']}"]
    lines += [f"skipped {s['backend']}: {s['reason']}" for s in result.get("skipped", [])]
    return "\n".join(lines) if lines else "(no results)"
