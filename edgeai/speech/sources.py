"""Live audio input: one interface for a microphone and for a file played as if it were one.

Boundary: `AudioSource.blocks()` yields 16 kHz mono float32 blocks as they "arrive" until the
source ends or `stop()` is called (push-to-talk's second key press); consumers (streaming
transcription, the chat's push-to-talk, a level meter) only ever read blocks, so tests drive
them with `FileSource` and nothing needs sound hardware. `MicSource` imports `sounddevice` only
in `blocks()`: without PortAudio or without an input device it raises `NoMicrophone`, one line.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from edgeai.errors import BadInput
from edgeai.speech.audio import RATE, Resampler, iter_audio


class NoMicrophone(BadInput):
    """No PortAudio library, no input device, or the device refused to open."""


class AudioSource(Protocol):
    rate: int  # always RATE: sources resample before they yield

    def blocks(self) -> Iterator[Any]: ...  # float32 (n,) arrays at `rate`, in arrival order

    def stop(self) -> None: ...  # ends `blocks()` after the block in flight; safe from any thread


class FileSource:
    """An audio file as a live stream: `block_s`-second blocks, paced at `speed` x real time
    (`realtime=False`: as fast as it decodes). Decoding is block by block (`iter_audio`)."""

    rate = RATE

    def __init__(self, path: str | Path, block_s: float = 0.1, realtime: bool = True, speed: float = 1.0):
        if block_s <= 0 or speed <= 0:
            raise BadInput("block length and speed must be above 0")
        self.path, self.block_s, self.realtime, self.speed = Path(path), block_s, realtime, speed
        self._stopped = threading.Event()

    def blocks(self) -> Iterator[Any]:
        self._stopped.clear()
        start, sent = time.monotonic(), 0
        for block in iter_audio(self.path, self.block_s):
            if self._stopped.is_set():
                return
            if self.realtime:  # a microphone hands over a block only once it has been spoken
                sent += len(block)
                wait = start + sent / (RATE * self.speed) - time.monotonic()
                if wait > 0 and self._stopped.wait(wait):
                    return
            yield block

    def stop(self) -> None:
        self._stopped.set()


class MicSource:
    """The default (or a named) input device through sounddevice's callback stream, opened at
    the device's own rate and resampled to 16 kHz (many devices refuse 16 kHz)."""

    rate = RATE

    def __init__(self, device: int | str | None = None, block_s: float = 0.1, timeout_s: float = 2.0):
        self.device, self.block_s, self.timeout_s = device, block_s, timeout_s
        self._stopped = threading.Event()

    def _open(self):
        try:
            import sounddevice as sd
        except (OSError, ImportError) as exc:  # OSError: the wheel has no PortAudio (libportaudio2)
            raise NoMicrophone(f"no microphone: {_first_line(exc)}",
                               "install PortAudio (Debian: apt install libportaudio2) and connect an "
                               "input device, or pass an audio file instead") from None
        try:
            info = sd.query_devices(self.device, kind="input")
        except Exception as exc:  # sounddevice.PortAudioError or ValueError: no such device
            raise NoMicrophone(f"no microphone: {_first_line(exc)}",
                               "connect an input device, or pass an audio file instead") from None
        return sd, info

    def blocks(self) -> Iterator[Any]:
        sd, info = self._open()
        rate = int(info["default_samplerate"])
        resampler = Resampler(rate, 1)
        arrived: queue.Queue = queue.Queue()

        def callback(indata, frames, when, status) -> None:  # PortAudio's thread: copy and go
            arrived.put(indata[:, 0].copy())

        self._stopped.clear()
        try:
            stream = sd.InputStream(samplerate=rate, channels=1, dtype="float32", device=self.device,
                                    blocksize=max(1, int(rate * self.block_s)), callback=callback)
        except Exception as exc:
            raise NoMicrophone(f"the microphone cannot be opened: {_first_line(exc)}") from None
        with stream:
            while not self._stopped.is_set():
                try:
                    samples = arrived.get(timeout=self.timeout_s)
                except queue.Empty:
                    raise NoMicrophone(f"the microphone sent nothing for {self.timeout_s:g} s") from None
                out = resampler.push(samples)
                if len(out):
                    yield out
        tail = resampler.flush()
        if len(tail):
            yield tail

    def stop(self) -> None:
        self._stopped.set()


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
