"""`edgeai convert` off a terminal: one-line progress on stderr, and a card whose time is the
whole run (export and its check)."""

from __future__ import annotations

import re

import pytest

from edgeai.cli.convert import LineProgress


def test_off_a_terminal_each_stage_is_a_line_and_a_long_one_repeats_every_ten_seconds():
    lines, now = [], [0.0]
    progress = LineProgress(lines.append, every=10, clock=lambda: now[0])
    progress.start("writing GGUF F32", 300)
    for _ in range(100):  # quick steps: no line each
        now[0] += 0.05
        progress.advance()
    now[0] += 10
    progress.advance()
    progress.start("validating", None)
    assert lines == ["convert: writing GGUF F32… (0 s)", "convert: writing GGUF F32 101/300 (15 s)",
                     "convert: validating… (15 s)"]


def test_convert_with_stderr_redirected_shows_progress_and_times_the_check(tiny_models, cli, tmp_path):
    pytest.importorskip("llama_cpp")
    pytest.importorskip("gguf")
    out = tmp_path / "out"
    result = cli("convert", str(tiny_models("llama")), "--to", "gguf", "--quant", "F32", "-o", str(out))
    err, card = result.stderr.decode(), result.stdout.decode()
    assert result.returncode == 0, err
    assert re.search(r"^convert: writing GGUF F32… \(\d+ s\)$", err, re.M), err
    total, export, check = map(float, re.search(r"([\d.]+) s: export ([\d.]+) \+ check ([\d.]+)",
                                                card).groups())
    assert check > 0 and abs(total - (export + check)) < 0.11, card
