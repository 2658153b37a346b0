"""`edgeai transcribe` as a user runs it: the real command in a subprocess, on piper speech."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from edgeai.bench.texts import SENTENCES
from edgeai.speech.audio import RATE, read_audio

pytest.importorskip("whisper")  # the WER normalizer
from edgeai.speech.wer import wer  # noqa: E402

SRT_CUE = re.compile(r"^\d+\n\d\d:\d\d:\d\d,\d{3} --> \d\d:\d\d:\d\d,\d{3}\n.+$", re.M)
VTT_CUE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} --> \d\d:\d\d:\d\d\.\d{3}\n.+$", re.M)


@pytest.fixture
def env(speech_models):
    """The command reads the session's models dir (assembled once)."""
    return {"EDGEAI_MODELS_DIR": str(speech_models.models_dir)}


def test_json_is_one_object_per_file_per_line(cli, env, synth, wav, tmp_path):
    """Two files; the second is 8-bit stereo 44.1 kHz, which is resampled, never refused."""
    first = synth(SENTENCES[7])
    speech = read_audio(synth(SENTENCES[3]))
    times = np.arange(int(len(speech) * 44100 / RATE)) * RATE / 44100
    at_44k = np.interp(times, np.arange(len(speech)), speech)
    second = wav(tmp_path / "u8-stereo-44k.wav", np.stack([at_44k, at_44k], 1), 44100, channels=2, width=1)
    result = cli("transcribe", str(first), str(second), "--model", "whisper-tiny.en", "--json", env=env)
    assert result.returncode == 0, result.stderr.decode()
    lines = result.stdout.decode().splitlines()
    assert len(lines) == 2
    rows = [json.loads(line) for line in lines]
    for row, text in zip(rows, (SENTENCES[7], SENTENCES[3]), strict=True):
        assert {"text", "language", "segments", "engine", "model", "rtf"} <= set(row)
        assert (row["language"], row["engine"], row["model"]) == ("en", "faster-whisper", "whisper-tiny.en")
        assert row["rtf"] > 0 and row["segments"]
        assert all(set(s) == {"start", "end", "text"} and s["start"] <= s["end"] for s in row["segments"])
        assert wer(text, row["text"]) <= 0.20, row["text"]
    assert "transcribing" not in result.stderr.decode()  # short clips: no progress lines


def test_srt_vtt_and_plain_text(cli, env, synth):
    clip = str(synth(SENTENCES[0]))
    srt = cli("transcribe", clip, "-m", "whisper-tiny.en", "--srt", "--beam-size", "1", env=env)
    vtt = cli("transcribe", clip, "-m", "whisper-tiny.en", "--vtt", "--beam-size", "1", env=env)
    plain = cli("transcribe", clip, "-m", "whisper-tiny.en", "--beam-size", "1", env=env)
    assert srt.returncode == vtt.returncode == plain.returncode == 0, srt.stderr + vtt.stderr + plain.stderr
    srt_text, vtt_text = srt.stdout.decode(), vtt.stdout.decode()
    assert srt_text.startswith("1\n00:00:00,") and SRT_CUE.search(srt_text)
    assert all(SRT_CUE.fullmatch(cue) for cue in srt_text.strip().split("\n\n"))
    assert vtt_text.startswith("WEBVTT\n\n") and VTT_CUE.search(vtt_text)
    assert wer(SENTENCES[0], plain.stdout.decode()) <= 0.20


def test_long_audio_reports_progress_off_a_terminal(cli, env, synth, wav, tmp_path):
    audio = np.zeros(RATE * 75, np.float32)
    speech = read_audio(synth(SENTENCES[7]))
    audio[RATE * 40:RATE * 40 + len(speech)] = speech
    path = wav(tmp_path / "long.wav", audio, RATE)
    result = cli("transcribe", str(path), "-m", "whisper-tiny.en", "--json", env=env)
    assert result.returncode == 0, result.stderr.decode()
    progress = result.stderr.decode().splitlines()
    assert progress and all(line.startswith("transcribing long.wav: ") for line in progress)
    assert progress[-1].endswith("100% (75 of 75 s)")
    row = json.loads(result.stdout)
    assert wer(SENTENCES[7], row["text"]) <= 0.20 and abs(row["segments"][0]["start"] - 40) < 1.5


@pytest.mark.parametrize("make,args,message", [
    (lambda d: d / "absent.wav", [], "no such audio file"),
    (lambda d: (d / "notes.txt").write_text("not audio\n" * 30) and d / "notes.txt", [], "not an audio file"),
    (lambda d: (d / "zero.wav").write_bytes(b"") or d / "zero.wav", [], "is empty"),
    (None, ["--translate"], "English-only: it cannot translate"),
    (None, ["--json", "--srt"], "choose one"),
    (None, ["--engine", "whisper.cpp"], "Invalid value for '--engine'"),
    (None, ["--model", "echo"], "not a speech-to-text model"),
])
def test_bad_input_is_one_line_and_exit_2(cli, env, synth, tmp_path, make, args, message):
    path = make(tmp_path) if make else synth(SENTENCES[7])
    model = [] if "--model" in args else ["-m", "whisper-tiny.en"]
    result = cli("transcribe", str(path), *model, *args, env=env)
    err = result.stderr.decode()
    assert result.returncode == 2, err
    assert message in err and "Traceback" not in err
    assert err.startswith("edgeai: error: ") and len(err.strip().splitlines()) <= 2  # the line + a hint
    assert result.stdout == b""


def test_zero_length_wav_is_refused_with_its_reason(cli, env, wav, tmp_path):
    path = wav(tmp_path / "silent.wav", np.zeros(0), RATE)
    result = cli("transcribe", str(path), "-m", "whisper-tiny.en", env=env)
    assert result.returncode == 2 and "holds no audio samples (zero-length audio)" in result.stderr.decode()
