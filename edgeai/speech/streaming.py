"""Streaming transcription of live input: partial text while someone speaks, final text once stable.

Boundary: an engine + an `AudioSource` in, a generator of `Partial`s out. The approach of
whisper.cpp's `stream` and whisper_streaming: re-transcribe a growing window of the newest audio
every `step_s` seconds; a segment that two passes in a row agree on and that ends at least
`settle_s` before the window's edge is committed (`final=True`) and its audio is dropped from the
window; everything after it is the partial hypothesis (`final=False`), replaced by the next
pass. A window that reaches `max_window_s` commits all but its last segment, so memory and the
cost of a pass stay bounded however long the input runs. When the source ends (push-to-talk
released), what is left is transcribed once more and committed.

A pass that takes longer than `step_s` stretches the next step to its own duration, so slow
hardware transcribes less often instead of falling ever further behind the speaker.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from edgeai.speech.audio import RATE
from edgeai.speech.sources import AudioSource
from edgeai.speech.stt import Engine, Options, Segment, check_options


@dataclass(frozen=True)
class Partial:
    text: str
    final: bool  # True: committed, never revised; False: the current guess at the newest audio
    start: float  # seconds from the start of the stream
    end: float


def _same(a: Segment, b: Segment) -> bool:
    return a.text.strip().lower() == b.text.strip().lower()


def stream_transcribe(engine: Engine, source: AudioSource, options: Options | None = None,
                      step_s: float = 1.0, settle_s: float = 1.0,
                      max_window_s: float = 20.0) -> Iterator[Partial]:
    """Partial and final texts over a live source, in order; finals concatenated are the transcript."""
    import numpy as np

    options = options or Options()
    check_options(engine, options)
    # the VAD keeps silence (before and after speech, between presses) from being "heard" as words
    options = replace(options, vad=True if options.vad is None else options.vad)
    window: list[Any] = []
    held = since = 0
    offset = 0.0  # stream seconds before the window's first sample
    step = int(step_s * RATE)
    previous: list[Segment] = []
    shown = ""
    language = options.language
    for block in source.blocks():
        window.append(block)
        held += len(block)
        since += len(block)
        if since < step:
            continue
        since = 0
        audio = np.concatenate(window)
        began = time.perf_counter()
        segments, language = _pass(engine, audio, options, language)
        step = int(max(step_s, time.perf_counter() - began) * RATE)
        length = len(audio) / RATE
        commit = 0
        while (commit < min(len(segments), len(previous)) and _same(segments[commit], previous[commit])
               and segments[commit].end <= length - settle_s):
            commit += 1
        if length >= max_window_s and len(segments) > 1:
            commit = max(commit, len(segments) - 1)
        for seg in segments[:commit]:
            yield Partial(seg.text.strip(), True, offset + seg.start, offset + seg.end)
        if commit:
            cut = _cut(audio, segments[commit - 1].end)
            rest = audio[cut:]
            window, held = ([rest] if len(rest) else []), len(rest)
            offset += cut / RATE
            previous = [s.shifted(-cut / RATE) for s in segments[commit:]]
        else:
            window, previous = [audio], segments
        tail = " ".join(s.text.strip() for s in previous if s.text.strip())
        if tail != shown:
            shown = tail
            yield Partial(tail, False, offset, offset + held / RATE)
    if held:
        segments, language = _pass(engine, np.concatenate(window), options, language)
        for seg in segments:
            if seg.text.strip():
                yield Partial(seg.text.strip(), True, offset + seg.start, offset + seg.end)


def _cut(audio: Any, end: float, around_s: float = 0.3) -> int:
    """Where to drop committed audio: the quietest 20 ms within `around_s` of the segment's end
    (Whisper's segment times are approximate; a cut inside the next word would garble it)."""
    from edgeai.speech.stt import quiet_point

    centre = int(end * RATE)
    lo, hi = max(0, centre - int(around_s * RATE)), min(len(audio), centre + int(around_s * RATE))
    if hi - lo < 320:
        return min(len(audio), centre)
    return quiet_point(audio[:hi], lo, frame=320)


def _pass(engine: Engine, audio: Any, options: Options,
          language: str | None) -> tuple[list[Segment], str | None]:
    decoded = engine.decode(audio, options, language)
    segments = [s for s in decoded.segments if s.text.strip()]
    if segments and language is None:  # fixed once heard, so later passes never flip it
        language = decoded.language
    return segments, language
