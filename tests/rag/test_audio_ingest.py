"""Audio files indexed through speech to text, as a user runs `edgeai rag add` and `rag query`.

The recording is made here with edgeai's own TTS (piper's joe voice): two sentences, half a
minute of silence, a third sentence, so the third one sits past the first 30 s mark and its
passage must carry its own time span. Real faster-whisper on the catalog's whisper-base (the
RAG default), real MiniLM, a fresh EDGEAI_HOME per test (conftest); the Whisper files come from
the session's models dir, so they are assembled once per run.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from pathlib import Path

import pytest

pytest.importorskip("faster_whisper", reason="needs the speech extra: scripts/setup")
pytest.importorskip("piper", reason="needs piper-tts and the joe voice: scripts/setup")

FIRST = "The lighthouse keeper logged forty two ships during the March storm."
SECOND = "Fresh water reaches the island every second Tuesday by ferry."
THIRD = "The museum closes early on public holidays, at three in the afternoon."
GAP_S = 25.0


def recording(path: Path) -> tuple[float, float, float]:
    """FIRST, SECOND, GAP_S of silence, THIRD as one 16-bit WAV; returns (seconds of the first
    two, where THIRD starts, where it ends)."""
    from edgeai.speech.tts import Audio, load_voice, synthesize, write_wav

    voice = load_voice()
    first, second, third = (synthesize(voice, text) for text in (FIRST, SECOND, THIRD))
    silence = Audio(b"\0\0" * round(GAP_S * voice.rate), voice.rate, "", 0.0, 0.0)
    write_wav(path, [first, second, silence, third])
    head = first.duration_s + second.duration_s
    return head, head + GAP_S, head + GAP_S + third.duration_s


def seconds_of(clock: str) -> int:
    minutes, secs = clock.split(":")
    return int(minutes) * 60 + int(secs)


def query(cli, question: str) -> list[dict]:
    proc = cli("rag", "query", question, "--json")
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout)["hits"]


def test_a_recording_is_found_with_a_time_span(tmp_path, cli, edgeai_home):
    docs = tmp_path / "recordings"
    docs.mkdir()
    wav = docs / "harbour-tour.wav"
    head, third_start, third_end = recording(wav)
    (docs / "not-audio.mp3").write_text("these are shopping notes, not a recording\n" * 20)
    (docs / "silent-take.flac").write_bytes(b"")

    started = time.perf_counter()
    proc = cli("rag", "add", str(docs), timeout=600)
    seconds = time.perf_counter() - started
    err = proc.stderr.decode()
    assert proc.returncode == 0 and "Traceback" not in err, err
    out = proc.stdout.decode()
    assert re.search(r"1 added, 0 updated, 0 unchanged, 0 removed, 2 skipped", out), out
    skipped = sorted(line for line in err.splitlines() if line.startswith("skipped: "))
    assert len(skipped) == 2, skipped
    assert skipped[0].startswith(f"skipped: {(docs / 'not-audio.mp3').resolve()}: not an audio file")
    assert skipped[1] == f"skipped: {(docs / 'silent-take.flac').resolve()}: empty, nothing to index"

    con = sqlite3.connect(f"file:{edgeai_home / 'rag' / 'default.db'}?mode=ro", uri=True)
    try:
        spans = [tuple(r) for r in con.execute("SELECT t_start, t_end, text FROM chunks ORDER BY ordinal")]
    finally:
        con.close()
    assert len(spans) == 2, spans  # the silence splits the recording at the 30 s mark
    assert spans[0][0] < 1.0 and abs(spans[0][1] - head) < 1.5
    assert abs(spans[1][0] - third_start) < 1.5 and abs(spans[1][1] - third_end) < 1.5

    hits = query(cli, "When does the museum close on holidays?")
    top = hits[0]
    assert top["file"] == str(wav.resolve()) and "museum closes early" in top["text"], hits
    m = re.fullmatch(r"at (\d+:\d\d)–(\d+:\d\d)", top["span"])
    assert m and top["page"] is None, top
    start, end = map(seconds_of, m.groups())
    # the citation covers the passage as indexed (start rounded down, end up), past the 30 s mark
    passage_start, passage_end = spans[1][0], spans[1][1]
    assert start <= passage_start and end >= passage_end and start >= 30, (top["span"], spans[1])
    hits_first = query(cli, "How many ships did the lighthouse keeper log?")
    assert hits_first[0]["file"] == str(wav.resolve()) and hits_first[0]["span"].startswith("at 0:00–"), \
        hits_first
    print(f"\naudio ingest: {third_end:.1f} s recording indexed in {seconds:.1f} s (process, model loads "
          f"included); museum span {top['span']} (true {third_start:.1f}-{third_end:.1f} s), rank 1")

    # a citation in the chat says where in the recording
    from edgeai.rag.context import Source

    source = Source(1, top["file"], top["page"], top["span"], top["text"], top.get("chunk_id"))
    assert source.label == f"[1] harbour-tour.wav {top['span']}"

    again = cli("rag", "add", str(docs))
    assert re.search(r"0 added, 0 updated, 1 unchanged", again.stdout.decode()), again.stdout.decode()


def test_without_a_speech_engine_each_recording_is_one_line(tmp_path):
    """faster-whisper missing (blocked as an uninstalled package reads): each recording says so
    in one line with what to install; the engine is tried once, the text file still indexes."""
    import math
    import struct
    import subprocess
    import sys
    import wave

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "pier.txt").write_text("The pier is 300 metres long.\n")
    for name in ("a.wav", "b.wav"):
        with wave.open(str(docs / name), "wb") as handle:
            handle.setnchannels(1)
            handle.setsampwidth(2)
            handle.setframerate(16000)
            handle.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(i / 8))) for i in range(16000)))
    probe = ("import sys\nsys.modules['faster_whisper'] = None\nfrom edgeai.cli import run_cli\n"
             f"sys.exit(run_cli(['rag', 'add', {str(docs)!r}]))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert "1 added, 0 updated, 0 unchanged, 0 removed, 2 skipped" in result.stdout
    skipped = [line for line in result.stderr.splitlines() if line.startswith("skipped: ")]
    assert len(skipped) == 2 and all(": audio: speech to text is not available (" in line
                                     and "pip install 'edgeai[speech]'" in line for line in skipped), skipped
