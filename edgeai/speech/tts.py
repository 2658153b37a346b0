"""Text to speech: text (whole, or a reply still being written) -> timed audio -> a WAV file.

The library surface the CLI (`edgeai speak`), the chat's read-aloud and `bench tts` share:
`load_voice` (from `voices.py`: piper's joe by default, espeak-ng only when piper is missing),
`synthesize` (one text, one `Audio`), `stream_speech` (chunks of a reply in, one `Audio` per
sentence out, each as soon as its sentence ends; `sentences.py` decides where they end),
`write_wav` (16-bit PCM mono, atomic). Playback is `player.py`'s. Audio is 16-bit little-endian
PCM bytes throughout, so nothing here needs numpy.

Each `Audio` carries its synthesis time and the moment it was ready, and `SpeechStats` adds up a
stream (time to first audio, real-time factor): what `bench tts` reports, measured here once.
"""

from __future__ import annotations

import time
import wave
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from edgeai.errors import BadInput
from edgeai.fileio import atomic_writer
from edgeai.speech.sentences import SentenceSplitter, speakable
from edgeai.speech.voices import VoiceInfo, find_voice, list_voices, load_voice

__all__ = ["Audio", "SpeechStats", "Voice", "VoiceInfo", "find_voice", "list_voices", "load_voice",
           "stream_speech", "synthesize", "write_wav"]

SAMPLE_WIDTH = 2  # bytes: 16-bit PCM


class Voice(Protocol):
    name: str
    engine: str
    rate: int  # samples per second of what pcm() returns

    def pcm(self, text: str) -> bytes: ...  # 16-bit little-endian mono samples


@dataclass(frozen=True)
class Audio:
    pcm: bytes
    rate: int
    text: str
    synth_s: float  # seconds spent synthesizing this piece
    ready_at: float  # time.perf_counter() when it was ready

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / SAMPLE_WIDTH / self.rate

    @property
    def rtf(self) -> float:
        """Real-time factor: synthesis time / audio time (below 1 is faster than speech)."""
        return self.synth_s / self.duration_s if self.pcm else 0.0


@dataclass
class SpeechStats:
    """A stream's timings, filled in as it runs. `started` is when the stream began pulling text."""

    started: float = 0.0
    first_audio_s: float | None = None  # from `started` to the first sentence's audio being ready
    synth_s: float = 0.0
    audio_s: float = 0.0
    sentences: int = 0

    @property
    def rtf(self) -> float:
        return self.synth_s / self.audio_s if self.audio_s else 0.0

    def add(self, audio: Audio) -> None:
        if self.first_audio_s is None:
            self.first_audio_s = audio.ready_at - self.started
        self.synth_s += audio.synth_s
        self.audio_s += audio.duration_s
        self.sentences += 1


def synthesize(voice: Voice, text: str) -> Audio:
    """One text -> one Audio (piper still speaks it sentence by sentence inside)."""
    text = speakable(text)
    start = time.perf_counter()
    pcm = voice.pcm(text) if text else b""
    end = time.perf_counter()
    return Audio(pcm, voice.rate, text, end - start, end)


def stream_speech(voice: Voice, chunks: Iterable[str], stats: SpeechStats | None = None) -> Iterator[Audio]:
    """A reply arriving in chunks (tokens) -> one Audio per sentence, each yielded as soon as its
    sentence is complete, so speech can start while the reply is still being written; the tail
    without a full stop comes when the chunks end. A sentence with nothing to say is skipped."""
    stats = stats if stats is not None else SpeechStats()
    stats.started = time.perf_counter()
    splitter = SentenceSplitter()

    def spoken(sentences: list[str]) -> Iterator[Audio]:
        for sentence in sentences:
            audio = synthesize(voice, sentence)
            if audio.pcm:
                stats.add(audio)
                yield audio

    for chunk in chunks:
        yield from spoken(splitter.feed(chunk))
    yield from spoken(splitter.flush())


def write_wav(path: Path, audios: Iterable[Audio]) -> float:
    """Audio pieces -> one 16-bit PCM mono WAV at `path`, written atomically (an interrupted
    synthesis leaves no file). Returns the seconds of audio written; none is BadInput."""
    path = Path(path)
    if not path.parent.is_dir():
        raise BadInput(f"cannot write {path}: the folder {path.parent} does not exist")
    seconds = 0.0
    with atomic_writer(path) as handle:
        writer, rate = None, None
        try:
            for audio in audios:
                if writer is None:
                    writer, rate = wave.open(handle, "wb"), audio.rate
                    writer.setnchannels(1)
                    writer.setsampwidth(SAMPLE_WIDTH)
                    writer.setframerate(rate)
                elif audio.rate != rate:
                    raise ValueError(f"audio at {audio.rate} Hz after {rate} Hz in one WAV")
                writer.writeframes(audio.pcm)
                seconds += audio.duration_s
        finally:
            if writer is not None:
                writer.close()  # patches the header's sizes, before atomic_writer fsyncs and renames
        if writer is None:
            raise BadInput("nothing to say: the text has no speakable words")
    return seconds
