"""Playing speech through the sound card, stoppable mid-word: the read-aloud player.

`Player.play(audio)` queues a piece and returns; a worker thread writes it to the output stream
in short blocks, so `stop()` (Esc, or the user starting to talk) silences it within one block and
drops everything queued. A speaker that synthesizes as it goes calls `wait_for_room()` before
making the next piece, so synthesis stays one sentence ahead of the voice: a stop wastes at most
one sentence, and the CPU is not spent on speech nobody may hear while the reply is still being
written. `sounddevice` is imported only when a stream is first opened; without
PortAudio or without an output device that is `NoSoundOutput`, one line (exit 2). The stream is
the one seam: `Player(open_stream=...)` takes any object with sounddevice's RawOutputStream
methods (start, write, abort, close), which is how the tests play into a fake sound card.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from edgeai.errors import BadInput
from edgeai.speech.tts import SAMPLE_WIDTH, Audio

BLOCK_S = 0.05  # stop() is heard within about this much audio (plus the device's own buffer)
AHEAD = 1  # pieces that may wait behind the one playing before wait_for_room() blocks
NO_OUTPUT_HINT = "write a file instead: edgeai speak TEXT -o OUT.wav"


class NoSoundOutput(BadInput):
    """No PortAudio library, or no output device: nothing can be played here."""


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """File descriptor 2 to /dev/null for a block: PortAudio's start-up on a machine without a
    sound card makes ALSA print a screenful of "cannot find card" lines there, which would bury
    the one line we say. What fails still reaches the user as our exception."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        sys.stderr.flush()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _sounddevice() -> Any:
    try:
        with _quiet_stderr():
            import sounddevice
    except OSError as exc:  # sounddevice's wheel needs the system's libportaudio2 on Linux
        raise NoSoundOutput(f"no sound output: {exc} (apt-get install libportaudio2)",
                            NO_OUTPUT_HINT) from exc
    except ImportError as exc:
        raise NoSoundOutput("no sound output: the sounddevice package is not installed",
                            NO_OUTPUT_HINT) from exc
    return sounddevice


def check_output() -> None:
    """Fail now, before any synthesis, when there is nowhere to play sound."""
    sd = _sounddevice()
    try:
        with _quiet_stderr():
            device = sd.query_devices(kind="output")
    except Exception as exc:  # PortAudioError / ValueError: no default output device
        raise NoSoundOutput(f"no sound output device ({exc})", NO_OUTPUT_HINT) from exc
    if not device or device.get("max_output_channels", 0) < 1:
        raise NoSoundOutput("no sound output device", NO_OUTPUT_HINT)


def open_output(rate: int) -> Any:
    """A 16-bit mono output stream on the default device (sounddevice's RawOutputStream)."""
    check_output()
    sd = _sounddevice()
    try:
        return sd.RawOutputStream(samplerate=rate, channels=1, dtype="int16")
    except Exception as exc:
        raise NoSoundOutput(f"cannot open the sound output at {rate} Hz ({exc})", NO_OUTPUT_HINT) from exc


class Player:
    """Queued, stoppable playback. play() never blocks; wait() blocks until all is heard or
    stopped; stop() silences the current piece within a block and drops the queue."""

    def __init__(self, open_stream: Callable[[int], Any] = open_output, block_s: float = BLOCK_S):
        self._open_stream = open_stream
        self._block_s = block_s
        self._queue: queue.Queue[tuple[int, Audio] | None] = queue.Queue()
        # stop() bumps the generation; the worker drops every piece queued under an older one
        self._generation = 0
        self._lock = threading.Lock()
        self._room = threading.Condition()  # notified whenever the worker takes a piece
        self._stream: Any = None
        self._rate: int | None = None
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None  # what ended playback in the worker, if anything
        self.played_s = 0.0  # audio written to the device so far

    def play(self, audio: Audio) -> None:
        with self._lock:
            self._enqueue(self._generation, audio)

    def play_all(self, audios: Iterable[Audio]) -> None:
        """Queue pieces as they come (a stream still synthesizing) and wait for the end. A stop()
        also ends the loop, so the rest of the stream is never synthesized."""
        with self._lock:
            generation = self._generation
        pieces = iter(audios)
        while self._current(generation):
            audio = next(pieces, None)  # synthesizes the next piece, one ahead of the voice
            if audio is None:
                break
            with self._lock:
                if not self._current(generation):
                    break
                self._enqueue(generation, audio)
            self.wait_for_room()
        self.wait()

    def wait_for_room(self) -> None:
        """Block while AHEAD pieces already wait behind the one playing. A stop drops them, so
        it ends the wait too; so does a broken player (the next play() raises its error)."""
        with self._room:
            self._room.wait_for(lambda: self._queue.qsize() < AHEAD or self.error is not None)

    def _enqueue(self, generation: int, audio: Audio) -> None:
        if self.error is not None:
            raise self.error
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="edgeai-player", daemon=True)
            self._thread.start()
        self._queue.put((generation, audio))

    def stop(self) -> None:
        with self._lock:
            self._generation += 1

    def wait(self, timeout: float | None = None) -> bool:
        """Block until everything queued is played or dropped; True when done."""
        if self._thread is None:
            return True
        done = threading.Event()
        waiter = threading.Thread(target=lambda: (self._queue.join(), done.set()), daemon=True)
        waiter.start()
        finished = done.wait(timeout)
        if self.error is not None:
            raise self.error
        return finished

    @property
    def busy(self) -> bool:
        return self._queue.unfinished_tasks > 0

    def close(self) -> None:
        self.stop()
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=5)
            self._thread = None

    def _current(self, generation: int) -> bool:
        return generation == self._generation

    def _run(self) -> None:
        try:
            while True:
                item = self._queue.get()
                with self._room:
                    self._room.notify_all()
                try:
                    if item is None:
                        return
                    generation, audio = item
                    if self.error is None and self._current(generation):
                        self._write(generation, audio)
                except BaseException as exc:  # noqa: BLE001  (handed to the caller by play/wait)
                    self.error = exc
                finally:
                    self._queue.task_done()
        finally:
            self._close_stream()

    def _write(self, generation: int, audio: Audio) -> None:
        if self._stream is None or self._rate != audio.rate:
            self._close_stream()
            self._stream = self._open_stream(audio.rate)
            self._rate = audio.rate
            self._stream.start()
        block = max(1, int(audio.rate * self._block_s)) * SAMPLE_WIDTH
        view = memoryview(audio.pcm)
        for start in range(0, len(view), block):
            if not self._current(generation):
                # abort, not stop: stop would play out what the device has already buffered
                self._stream.abort()
                self._stream.start()
                return
            piece = view[start:start + block]
            self._stream.write(bytes(piece))
            self.played_s += len(piece) / SAMPLE_WIDTH / audio.rate

    def _close_stream(self) -> None:
        if self._stream is not None:
            try:
                self._stream.abort()
                self._stream.close()
            finally:
                self._stream, self._rate = None, None
