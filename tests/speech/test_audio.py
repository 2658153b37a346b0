"""Audio in: any file FFmpeg decodes becomes 16 kHz mono float32, block by block; bad files are one
line; live sources (a file played in real time, the microphone) share one interface. The only
mock is the sound card (sounddevice), which this machine does not have."""

from __future__ import annotations

import os
import sys
import threading
import time
import types

import numpy as np
import pytest

from edgeai.errors import BadInput
from edgeai.speech.audio import RATE, Resampler, iter_audio, probe, read_audio
from edgeai.speech.sources import FileSource, MicSource, NoMicrophone

av = pytest.importorskip("av")


def tone(rate: int, seconds: float, hz: float = 440.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    wave_ = 0.5 * np.sin(2 * np.pi * hz * t)
    return wave_ if channels == 1 else np.stack([wave_] * channels, axis=1)


def peak_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(len(samples), 1 / RATE)[int(np.argmax(spectrum))])


def encode(path, codec: str, rate: int, seconds: float, frame_size: int | None = None):
    """A stereo tone encoded by FFmpeg (mp3, opus-in-ogg, flac)."""
    data = tone(rate, seconds, channels=2).T.astype(np.float32).copy()
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate, layout="stereo")
        frame = av.AudioFrame.from_ndarray(data, format="fltp", layout="stereo")
        frame.sample_rate = rate
        fifo = av.AudioFifo()
        fifo.write(frame)
        step = frame_size or stream.codec_context.frame_size or 1152
        while (piece := fifo.read(step)) is not None:
            out.mux(stream.encode(piece))
        if fifo.samples:
            out.mux(stream.encode(fifo.read()))
        out.mux(stream.encode(None))
    return path


def test_8bit_stereo_44k_wav_is_resampled_not_refused(tmp_path, wav):
    path = wav(tmp_path / "u8.wav", tone(44100, 2.0, channels=2), 44100, channels=2, width=1)
    info = probe(path)
    assert (info.rate, info.channels, info.codec, info.duration) == (44100, 2, "pcm_u8", 2.0)
    samples = read_audio(path)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert abs(len(samples) - 2 * RATE) <= 16
    assert abs(peak_hz(samples) - 440) < 2  # the pitch survives the rate change


@pytest.mark.parametrize("name,codec,rate,frame", [("tone.mp3", "libmp3lame", 44100, None),
                                                  ("tone.ogg", "libopus", 48000, 960),
                                                  ("tone.flac", "flac", 22050, None)])
def test_compressed_formats_decode_at_16k_mono(tmp_path, name, codec, rate, frame):
    path = encode(tmp_path / name, codec, rate, 3.0, frame)
    samples = read_audio(path)
    assert abs(len(samples) / RATE - 3.0) < 0.1
    assert abs(peak_hz(samples) - 440) < 2


def test_blocks_are_bounded_and_add_up(tmp_path, wav):
    """A long file arrives in blocks of the asked size: the reader never holds it whole."""
    path = wav(tmp_path / "long.wav", np.zeros(RATE * 95), RATE)
    sizes = [len(b) for b in iter_audio(path, block_s=10.0)]
    assert max(sizes) == 10 * RATE and sum(sizes) == 95 * RATE and len(sizes) == 10


def put(path, data: bytes):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("make,message", [
    (lambda d, w: d / "absent.wav", "no such audio file"),
    (lambda d, w: d, "is a folder"),
    (lambda d, w: put(d / "zero.wav", b""), r"is empty \(0 bytes\)"),
    (lambda d, w: w(d / "silent.wav", np.zeros(0), RATE), "holds no audio samples"),
    (lambda d, w: put(d / "notes.txt", b"shopping list\n" * 50), "not an audio file"),
    (lambda d, w: put(d / "noise.mp3", os.urandom(40_000)), "audio"),
    (lambda d, w: put(d / "image.wav", b"\x89PNG\r\n\x1a\n" + os.urandom(5000)), "audio"),
])
def test_bad_files_are_one_line(tmp_path, wav, make, message):
    path = make(tmp_path, wav)
    with pytest.raises(BadInput, match=message) as err:
        read_audio(path)
    assert "\n" not in err.value.message


def test_resampler_streams_any_rate_and_layout():
    resampler = Resampler(44100, channels=2)
    stereo = tone(44100, 2.0, channels=2)
    out = [resampler.push(stereo[i:i + 4410]) for i in range(0, len(stereo), 4410)]
    out.append(resampler.flush())
    joined = np.concatenate(out)
    assert abs(len(joined) - 2 * RATE) <= 32 and joined.dtype == np.float32
    assert abs(peak_hz(joined) - 440) < 2


def test_file_source_is_paced_like_a_microphone_and_stops(tmp_path, wav):
    path = wav(tmp_path / "tone.wav", tone(22050, 2.0), 22050)
    whole = np.concatenate(list(FileSource(path, realtime=False).blocks()))
    assert np.allclose(whole, read_audio(path))
    began = time.monotonic()
    blocks = list(FileSource(path, block_s=0.1, speed=8.0).blocks())
    assert time.monotonic() - began >= 2.0 / 8 * 0.8  # paced, not dumped at once
    assert all(len(b) == RATE // 10 for b in blocks[:-1])
    source = FileSource(path, block_s=0.1)
    got = []
    for block in source.blocks():
        got.append(block)
        if len(got) == 3:
            source.stop()  # push-to-talk released
    assert len(got) == 3


def test_no_microphone_here_is_one_clear_line(monkeypatch):
    """The real thing, unmocked: this machine has no PortAudio library (or no input device)."""
    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    try:
        blocks = MicSource(timeout_s=0.5).blocks()
        next(blocks)
    except NoMicrophone as err:
        assert err.exit_code == 2 and "\n" not in err.message
        assert err.message.startswith(("no microphone", "the microphone"))
        return
    blocks.close()
    pytest.skip("this machine has a working microphone")


class FakeSoundDevice(types.ModuleType):
    """The one mock: sounddevice over a sound card that has (or lacks) an input device."""

    def __init__(self, devices: bool, rate: int = 48000):
        super().__init__("sounddevice")
        self.devices, self.rate = devices, rate

    def query_devices(self, device=None, kind=None):
        if not self.devices:
            raise RuntimeError("Error querying device -1")
        return {"name": "fake", "default_samplerate": float(self.rate)}

    def InputStream(self, samplerate, channels, dtype, device, blocksize, callback):  # noqa: N802
        fake = self

        class Stream:
            def __enter__(self):
                self.running = True

                def feed():
                    signal = tone(fake.rate, 1.0).astype(np.float32)
                    for i in range(0, len(signal), blocksize):
                        if not self.running:
                            return
                        callback(signal[i:i + blocksize, None], blocksize, None, None)
                        time.sleep(0.01)

                self.thread = threading.Thread(target=feed, daemon=True)
                self.thread.start()
                return self

            def __exit__(self, *exc):
                self.running = False

        return Stream()


def test_no_input_device_is_one_clear_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", FakeSoundDevice(devices=False))
    with pytest.raises(NoMicrophone, match="no microphone: Error querying device -1"):
        next(MicSource().blocks())


def test_microphone_blocks_are_resampled_to_16k(monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", FakeSoundDevice(devices=True, rate=48000))
    mic = MicSource(block_s=0.1, timeout_s=1.0)
    got = []
    for block in mic.blocks():
        got.append(block)
        if sum(len(b) for b in got) >= RATE * 0.8:
            mic.stop()
    joined = np.concatenate(got)
    assert joined.dtype == np.float32 and len(joined) >= RATE * 0.8
    assert abs(peak_hz(joined) - 440) < 3
