"""`edgeai speak TEXT|- [-o OUT.wav] [--voice NAME]`: the contract, through `run_cli` (the voice
is cached per process, so piper loads once) and, where a real process matters (Ctrl-C, the
imports `--help` pays for), as a subprocess."""

from __future__ import annotations

import io
import shutil
import signal
import subprocess
import sys
import time
import wave

import pytest

from edgeai.cli import run_cli
from edgeai.speech.player import NoSoundOutput, check_output

TEXT = "Good evening. The weather today is calm, with a light breeze from the west."


def speak(capsys, *args: str) -> tuple[int, str]:
    code = run_cli(["speak", *args])
    return code, capsys.readouterr().err


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[0].startswith("edgeai: error: "), err
    assert len(lines) <= 2 and "Traceback" not in err, err  # the message, and at most a hint
    return lines[0]


def assert_wav(path, words: int) -> None:
    with wave.open(str(path), "rb") as handle:
        params = handle.getparams()
    assert (params.nchannels, params.sampwidth, params.framerate, params.comptype) == (1, 2, 22050, "NONE")
    seconds = params.nframes / params.framerate
    assert words / 5 <= seconds <= words / 1.2 + 1.0


def test_speak_writes_a_wav_and_exits_0(capsys, tmp_path):
    out = tmp_path / "evening.wav"
    code, err = speak(capsys, TEXT, "-o", str(out))
    assert code == 0, err
    assert_wav(out, len(TEXT.split()))
    assert "piper:joe" in err
    assert [p.name for p in tmp_path.iterdir()] == ["evening.wav"]


def test_speak_reads_stdin_with_a_dash(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(TEXT.encode("utf-8"))))
    out = tmp_path / "stdin.wav"
    code, err = speak(capsys, "-", "-o", str(out))
    assert code == 0, err
    assert_wav(out, len(TEXT.split()))


def test_speak_with_an_espeak_voice(capsys, tmp_path):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    out = tmp_path / "espeak.wav"
    code, err = speak(capsys, TEXT, "--voice", "en-us", "-o", str(out))
    assert code == 0, err
    assert_wav(out, len(TEXT.split()))


@pytest.mark.parametrize("text", ["", "   \n\t"])
def test_empty_text_is_one_line_exit_2(capsys, tmp_path, text):
    code, err = speak(capsys, text, "-o", str(tmp_path / "x.wav"))
    assert code == 2
    assert "nothing to say" in one_error_line(err)
    assert list(tmp_path.iterdir()) == []


def test_unknown_voice_names_the_known_voices(capsys, tmp_path):
    code, err = speak(capsys, TEXT, "--voice", "nobody", "-o", str(tmp_path / "x.wav"))
    assert code == 2
    assert "unknown voice 'nobody'" in one_error_line(err)
    assert "known voices: piper: joe" in err


def test_non_utf8_stdin_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "edgeai", "speak", "-", "-o", str(tmp_path / "x.wav")],
                            input=b"caf\xe9 au lait", capture_output=True, timeout=60)
    assert result.returncode == 2
    assert "stdin is not UTF-8 text (byte 0xe9 at offset 3)" in one_error_line(result.stderr.decode())
    assert list(tmp_path.iterdir()) == []


def test_output_into_a_missing_folder_is_one_line(capsys, tmp_path):
    code, err = speak(capsys, TEXT, "-o", str(tmp_path / "nope" / "x.wav"))
    assert code == 2
    assert "does not exist" in one_error_line(err)
    assert list(tmp_path.iterdir()) == []


def test_no_sound_device_without_o_is_one_line_exit_2(capsys):
    try:
        check_output()
    except NoSoundOutput:
        pass
    else:
        pytest.skip("this machine has a sound output device")
    code, err = speak(capsys, TEXT)
    assert code == 2
    assert "no sound output" in one_error_line(err) and "-o OUT.wav" in err


def test_list_voices_marks_the_default(capsys):
    assert run_cli(["speak", "--list-voices"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("joe\tpiper\ten_US  (default)")


def test_ctrl_c_mid_synthesis_leaves_no_wav(tmp_path):
    """A long text (about a minute of speech) interrupted while it synthesizes: exit 130, and
    neither the WAV nor a temporary file is left behind."""
    sentence = "This is sentence number {} of a long text that takes a while to say."
    text = " ".join(sentence.format(n) for n in range(25))
    out = tmp_path / "long.wav"
    child = subprocess.Popen([sys.executable, "-m", "edgeai", "speak", "-", "-o", str(out)],
                             stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    child.stdin.write(text.encode())
    child.stdin.close()
    deadline = time.monotonic() + 30
    while not any(tmp_path.iterdir()) and time.monotonic() < deadline:  # the temp WAV is open
        time.sleep(0.05)
    assert child.poll() is None, "finished before it could be interrupted"
    child.send_signal(signal.SIGINT)
    assert child.wait(timeout=30) == 130
    assert "interrupted" in child.stderr.read().decode()
    assert list(tmp_path.iterdir()) == []


def test_speak_help_imports_no_speech_stack():
    probe = ("import sys\nfrom edgeai.cli import run_cli\ncode = run_cli(['speak', '--help'])\n"
             "heavy = {'piper', 'onnxruntime', 'numpy', 'sounddevice'}\n"
             "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy), file=sys.stderr)\n"
             "sys.exit(code)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines()[-1] == "[]"
