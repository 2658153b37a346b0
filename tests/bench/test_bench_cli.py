"""`edgeai bench compare/import/export` as a user runs them: files in, files out, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from edgeai.bench.schema import load_result, save_result

FIXTURES = Path(__file__).parent / "fixtures" / "results"


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgeai", "bench", *args], capture_output=True, text=True,
                          timeout=120)


def test_compare_writes_markdown_plots_and_a_terminal_chart(tmp_path, quick_result):
    mine = save_result(quick_result, tmp_path / "mine.json")
    out = tmp_path / "cmp"
    other = FIXTURES / "llama-bench-rtx4080.json"  # another device: a captured llama-bench run
    proc = bench("compare", str(mine), str(other), "--references", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "█" in proc.stdout and "published reference" in proc.stdout
    table = (out / "compare.md").read_text()
    assert "% of BW ceiling" in table and "57.6%" in table and "RTX 4080" in table
    for png in ("decode.png", "prefill.png"):
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_import_and_export_round_trip_through_the_cli(tmp_path):
    imported = tmp_path / "imported.json"
    assert bench("import", str(FIXTURES / "llama-bench-rtx4080.json"), "-o", str(imported)).returncode == 0
    result = load_result(imported)
    assert result["source"]["tool"] == "llama-bench"
    exported = tmp_path / "lb.json"
    assert bench("export", str(imported), "-o", str(exported)).returncode == 0
    again = tmp_path / "again.json"
    assert bench("import", str(exported), "-o", str(again)).returncode == 0
    assert load_result(again)["results"] == result["results"]
    assert isinstance(json.loads(exported.read_text()), list)


def test_bad_result_files_get_one_line_errors(tmp_path, quick_result):
    good = save_result(quick_result, tmp_path / "good.json")
    truncated = tmp_path / "truncated.json"
    truncated.write_text(good.read_text()[:200])
    newer = tmp_path / "newer.json"
    newer.write_text(good.read_text().replace('"schema_version": 1', '"schema_version": 2'))
    for path, message in ((truncated, "truncated or not JSON"), (newer, "newer edgeai"),
                          (tmp_path / "missing.json", "missing.json")):
        proc = bench("compare", str(path), "-o", str(tmp_path / "out"))
        assert proc.returncode == 2, proc.stderr
        assert message in proc.stderr and "Traceback" not in proc.stderr
        assert not (tmp_path / "out" / "compare.md").exists()
    proc = bench("export", str(FIXTURES / "llama-bench-rtx4080.json"), "-o", str(tmp_path / "x.json"))
    assert proc.returncode == 2 and "llama-bench output" in proc.stderr


def test_an_unwritable_output_fails_before_the_run(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    proc = bench("llm", "--model", "echo", "--backend", "echo", "--pp", "16", "--tg", "4",
                 "-o", str(blocker / "r.json"))
    assert proc.returncode == 2 and "cannot write results" in proc.stderr
    assert "Traceback" not in proc.stderr and "pp16" not in proc.stdout  # nothing was run
