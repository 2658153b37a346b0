"""The `tts` suite: `edgeai bench tts`. How soon a voice starts speaking a reply, and how fast
it speaks compared with real time, per voice.

- first-audio-stream: the reply fed word by word (as a model writes it, but with no model in
  the way: the text arrives at once) through `tts.stream_speech`, which speaks each sentence as
  soon as it ends -> seconds until the first sentence's audio is ready.
- first-audio-whole: the same text spoken in one `tts.synthesize` call -> seconds until its
  audio is ready, which is when a player without streaming could start.
- rtf-stream / rtf-whole: synthesis seconds / audio seconds for each way.
The two ways run back to back per repeat, their order alternating (ABBA), so a busy machine
slows both alike. The text is a public-domain passage (`bench/texts.py`) unless `--text` is
given.

Boundary: voices and timings come from `edgeai.speech.tts` (`load_voice`, `synthesize`,
`stream_speech`, `SpeechStats`); this module only orders the runs and makes schema-v1 rows
(suite "tts"). Nothing heavy is imported at module level.
"""

from __future__ import annotations

import os
import platform
import re
import time
from collections.abc import Callable

from edgeai.errors import BadInput

DEFAULT_TEXT_INDEX = 1  # bench.texts.PASSAGES[1], the Gettysburg Address: sentences of many lengths


def default_text() -> str:
    from edgeai.bench.texts import PASSAGES

    return PASSAGES[DEFAULT_TEXT_INDEX]


def _chunks(text: str) -> list[str]:
    """The text as a model streams it: word by word, the spaces kept."""
    return re.findall(r"\S+\s*", text)


def run_tts(voices: list[str | None], *, text: str | None = None, repeats: int = 3,
            on_start: Callable[[str, int], None] = lambda name, total: None,
            on_tick: Callable[[str], None] = lambda label: None) -> dict:
    """One schema-v1 result (suite "tts"): per voice, load time, time to first audio streamed
    and whole, and both real-time factors. A None voice is the default voice."""
    from edgeai import __version__
    from edgeai.bench.device import detect, label
    from edgeai.bench.schema import add_row, new_result
    from edgeai.memory import peak_rss_mb
    from edgeai.speech.sentences import speakable, split_sentences
    from edgeai.speech.tts import SpeechStats, find_voice, load_voice, stream_speech, synthesize

    if repeats < 1:
        raise BadInput("--repeats must be at least 1")
    text = default_text() if text is None else text
    if not any(ch.isalnum() for ch in speakable(text)):
        raise BadInput("nothing to say: the text has no speakable words")
    infos = [find_voice(v) for v in voices]  # an unknown voice is one line before anything loads
    device = detect()
    result = new_result("tts", device=device, label=label(device, accelerator=False),
                        settings={"repeats": repeats, "voices": [i.name for i in infos], "chars": len(text),
                                  "sentences": len(split_sentences(text)), "text": text,
                                  "order": "stream/whole alternating (ABBA)",
                                  "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY") or "default"},
                        versions=_versions(), source={"tool": "edgeai", "version": __version__})
    on_start("tts", len(infos) * (1 + 2 * repeats))
    for asked, info in zip(voices, infos, strict=True):
        start = time.perf_counter()
        voice = load_voice(asked)
        load_s = time.perf_counter() - start
        synthesize(voice, "Warming up.")  # untimed: onnxruntime's first run allocates its arenas
        on_tick(f"{info.name} loaded")
        first = {"stream": [], "whole": []}
        rtf: dict[str, list[float]] = {"stream": [], "whole": []}
        audio_s = 0.0
        for rep in range(repeats):
            for way in (("stream", "whole") if rep % 2 == 0 else ("whole", "stream")):
                if way == "stream":
                    stats = SpeechStats()
                    for _ in stream_speech(voice, _chunks(text), stats):
                        pass
                    first[way].append(stats.first_audio_s or 0.0)
                    rtf[way].append(stats.rtf)
                else:
                    audio = synthesize(voice, text)
                    first[way].append(audio.synth_s)
                    rtf[way].append(audio.rtf)
                    audio_s = audio.duration_s
                on_tick(f"{info.name} {way}")
        common = {"backend": voice.engine, "model": voice.name, "quant": None}
        add_row(result, **common, test="load", unit="s", samples=[load_s])
        add_row(result, **common, test="first-audio-stream", unit="s", samples=first["stream"],
                audio_s=round(audio_s, 2))
        add_row(result, **common, test="first-audio-whole", unit="s", samples=first["whole"],
                audio_s=round(audio_s, 2))
        add_row(result, **common, test="rtf-stream", unit="rtf", samples=rtf["stream"])
        add_row(result, **common, test="rtf-whole", unit="rtf", samples=rtf["whole"])
    peak = peak_rss_mb()
    for row in result["results"]:
        row["peak_rss_mb"] = peak
    return result


def _versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    from edgeai import __version__

    found: dict[str, str | None] = {"edgeai": __version__, "python": platform.python_version()}
    for dist in ("piper-tts", "onnxruntime"):
        try:
            found[dist] = version(dist)
        except PackageNotFoundError:
            found[dist] = None
    return found


def report(result: dict) -> str:
    """What `edgeai bench tts` prints: one line per voice."""
    from edgeai.bench.compare import pipe_table

    by = {(r["backend"], r["model"], r["test"]): r for r in result["results"]}
    voices = sorted({(r["backend"], r["model"]) for r in result["results"]})
    rows = []
    for engine, name in voices:
        med = {test: row["median"] for (e, n, test), row in by.items() if (e, n) == (engine, name)}
        stream, whole = med["first-audio-stream"], med["first-audio-whole"]
        rows.append([engine, name, f"{med['load']:.2f} s", f"{stream:.3f} s", f"{whole:.3f} s",
                     f"{whole / stream:.1f}x" if stream else "—", f"{med['rtf-stream']:.3f}",
                     f"{med['rtf-whole']:.3f}", f"{by[engine, name, 'first-audio-whole']['audio_s']:.1f} s"])
    settings = result["settings"]
    head = (f"{settings['chars']} characters, {settings['sentences']} sentences; medians of "
            f"{settings['repeats']} repeat(s), streamed and whole alternating")
    table = pipe_table(["engine", "voice", "load", "first audio (stream)", "first audio (whole)", "sooner",
                        "RTF stream", "RTF whole", "audio"], rows, right=set(range(2, 9)))
    return head + "\n" + table
