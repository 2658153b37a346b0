"""Audio files in, 16 kHz mono float32 out: what every speech engine reads.

Boundary: a path (wav/flac/ogg/mp3/anything FFmpeg decodes, at any rate, depth and channel
count) -> numpy blocks at `RATE`, through PyAV (FFmpeg's decoders and resampler; the package
faster-whisper itself reads files with). Never refuses a rate, a depth or a layout: it resamples.
A missing file, a folder, a non-audio file and audio with no samples are each one `BadInput`
line. `iter_audio` decodes block by block, so a long file is never held whole: the caller sees
`block_s` seconds at a time (plus FFmpeg's own few-frame buffers). `Resampler` converts arrays
that arrive from elsewhere (a microphone at its own rate) with the same resampler.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeai.errors import BadInput

RATE = 16000  # Whisper's rate: every engine and the VAD read this


@dataclass(frozen=True)
class AudioInfo:
    path: Path
    duration: float | None  # seconds, from the container; None when it does not say
    rate: int  # the file's own sample rate
    channels: int
    codec: str


def _check_path(path: Path) -> None:
    if not path.exists():
        raise BadInput(f"no such audio file: {path}")
    if path.is_dir():
        raise BadInput(f"{path} is a folder, not an audio file")
    if path.stat().st_size == 0:
        raise BadInput(f"{path} is empty (0 bytes): no audio to transcribe")


def _open(path: Path):
    """An open container and its first audio stream, or one BadInput line."""
    import av

    _check_path(path)
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise BadInput(f"{path} is not an audio file FFmpeg can read ({_reason(exc)})") from None
    if not container.streams.audio:
        container.close()
        raise BadInput(f"{path} is not an audio file: it holds no audio stream")
    return container, container.streams.audio[0]


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.split(": '")[0].strip() or type(exc).__name__


def probe(path: str | Path) -> AudioInfo:
    """What the container says about its first audio stream (nothing is decoded)."""
    path = Path(path)
    container, stream = _open(path)
    try:
        duration = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000  # AV_TIME_BASE
        return AudioInfo(path, duration, int(stream.rate or 0), int(stream.channels or 0),
                         stream.codec_context.name)
    finally:
        container.close()


def iter_audio(path: str | Path, block_s: float = 30.0) -> Iterator[Any]:
    """16 kHz mono float32 blocks of `block_s` seconds (the last one shorter). Memory stays at
    one block plus the decoder's buffers whatever the file's length. Raises BadInput when the
    file decodes to no samples at all (after the last block, since only then is it known)."""
    import av
    import numpy as np

    path = Path(path)
    size = max(1, int(block_s * RATE))
    container, stream = _open(path)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=RATE)
    pending: list[Any] = []
    held = total = 0
    try:
        for frame in _frames(container, stream, path):
            for out in resampler.resample(frame):
                samples = out.to_ndarray().reshape(-1)
                pending.append(samples)
                held += len(samples)
            while held >= size:
                block, pending, held = _take(pending, size, held)
                total += len(block)
                yield block
        for out in resampler.resample(None):  # what the resampler still holds
            pending.append(out.to_ndarray().reshape(-1))
            held += len(pending[-1])
    finally:
        container.close()
    if held:
        block = np.concatenate(pending).astype(np.float32, copy=False)
        total += len(block)
        yield block
    if total == 0:
        raise BadInput(f"{path} holds no audio samples (zero-length audio)")


def _frames(container, stream, path: Path) -> Iterator[Any]:
    """Decoded frames; a damaged packet is skipped (as FFmpeg's tools do), a file that cannot be
    decoded at all is one BadInput line."""
    import av

    bad = 0
    try:
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                bad += 1
                if bad > 50:  # not a few damaged packets: the file is not what it says it is
                    raise
                continue
            for frame in frames:
                frame.pts = None  # the resampler only needs the samples; odd timestamps confuse it
                yield frame
    except av.FFmpegError as exc:
        raise BadInput(f"cannot decode the audio of {path} ({_reason(exc)})") from None


def _take(pending: list[Any], size: int, held: int) -> tuple[Any, list[Any], int]:
    import numpy as np

    joined = np.concatenate(pending) if len(pending) > 1 else pending[0]
    block, rest = joined[:size], joined[size:]
    return block.astype(np.float32, copy=False), ([rest] if len(rest) else []), held - size


def read_audio(path: str | Path) -> Any:
    """The whole file as one 16 kHz mono float32 array: for clips, not for hours of audio
    (`iter_audio` reads those block by block)."""
    import numpy as np

    return np.concatenate(list(iter_audio(path, block_s=60.0)))


class Resampler:
    """Arrays at any rate and channel count -> 16 kHz mono float32, in a stream: the filter's
    state carries from one call to the next, so block edges add no clicks."""

    def __init__(self, rate: int, channels: int = 1):
        import av

        if rate <= 0 or channels <= 0:
            raise BadInput(f"cannot resample audio at {rate} Hz with {channels} channels")
        self.rate, self.channels = rate, channels
        self._layout = "mono" if channels == 1 else "stereo" if channels == 2 else f"{channels}c"
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=RATE)

    def push(self, samples: Any) -> Any:
        """float samples, shape (n,) or (n, channels) -> the 16 kHz mono samples ready so far."""
        import numpy as np

        data = np.asarray(samples, dtype=np.float32).reshape(-1, self.channels)
        if self.rate == RATE and self.channels == 1:
            return data.reshape(-1).copy()
        return self._run(self._frame(data))

    def flush(self) -> Any:
        return self._run(None)

    def _frame(self, data):
        import av

        frame = av.AudioFrame.from_ndarray(data.reshape(1, -1), format="flt", layout=self._layout)
        frame.sample_rate = self.rate
        return frame

    def _run(self, frame) -> Any:
        import numpy as np

        outs = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)]
        return np.concatenate(outs).astype(np.float32, copy=False) if outs else np.zeros(0, np.float32)
