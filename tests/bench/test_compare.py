"""`bench compare`: the markdown table, the PNG plots, the terminal chart and one run's table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgeai.bench.compare import compare, load_all, render_table, terminal_chart
from edgeai.bench.schema import save_result
from edgeai.errors import BadInput

FIXTURES = Path(__file__).parent / "fixtures" / "results"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def table_rows(markdown: str) -> list[list[str]]:
    lines = [ln for ln in markdown.splitlines() if ln.startswith("| ")]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[1:]]  # without the header


def test_compare_writes_the_table_and_readable_plots(tmp_path, quick_result):
    mine = save_result(quick_result, tmp_path / "here.json")
    paths = [mine, FIXTURES / "llama-bench-b580-qwen05b.json", FIXTURES / "edgeai-cuda-depth-readme.json",
             FIXTURES / "mlx-benchmark-m4-air-qwen7b.txt"]
    out = tmp_path / "cmp"
    written = compare(paths, out, include_references=True)
    assert [p.name for p in written] == ["compare.md", "decode.png", "prefill.png", "decode_vs_depth.png"]
    for png in written[1:]:
        data = png.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 20_000, png.name
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in written)  # no temporaries

    md = (out / "compare.md").read_text()
    rows = table_rows(md)
    results = load_all(paths, include_references=True)
    assert len(rows) == sum(len(r["results"]) for r in results)
    header = md.splitlines()[md.splitlines().index(next(ln for ln in md.splitlines() if ln.startswith("| ")))]
    assert "% of BW ceiling" in header and "Source" in header
    ours = [r for r in rows if r[0] == "Xeon Platinum 8480+ · 2 cores" and r[4] == "tg32"]
    assert ours and ours[0][5] == "19.00 tok/s" and ours[0][7] == "57.6%" and ours[0][-1] == "edgeai 0.1.0"
    m2 = next(r for r in rows if r[0] == "Apple M2 (10-core GPU)" and r[4] == "tg128")
    assert m2[7] == "83.8%" and m2[-1].startswith("published [")
    assert "https://github.com/ggml-org/llama.cpp/discussions/4167" in md
    assert any(r[4] == "tg128 @ d512" for r in rows)  # depth shown the llama-bench way
    assert "Xeon Platinum 8480+ · 2 cores: onnx skipped — no ONNX artifact given" in md


def test_one_depth_only_means_no_depth_plot_and_no_reference_section(tmp_path):
    written = compare([FIXTURES / "llama-bench-rtx4080.json"], tmp_path)
    assert [p.name for p in written] == ["compare.md", "decode.png", "prefill.png"]
    md = written[0].read_text()
    assert "published" not in md.split("\n\n", 2)[-1].lower() and "llama-bench b5163" in md


def test_a_bad_file_stops_compare_with_one_line(tmp_path, quick_result):
    cut = tmp_path / "cut.json"
    cut.write_text(json.dumps(quick_result)[:300])
    with pytest.raises(BadInput, match=r"^truncated or not JSON: .*cut\.json \(line 1 col \d+\)$"):
        compare([FIXTURES / "llama-bench-rtx4080.json", cut], tmp_path / "out")
    assert not (tmp_path / "out").exists()
    empty = quick_result | {"results": []}
    with pytest.raises(BadInput, match="nothing to compare"):
        compare([save_result(empty, tmp_path / "empty.json")], tmp_path / "out")


def test_render_table_shows_the_ceiling_as_a_percentage(quick_result):
    text = render_table(quick_result)
    lines = text.splitlines()
    assert [c.strip() for c in lines[0].strip("|").split("|")] == [
        "backend", "model", "quant", "test", "median", "min–max", "% of BW ceiling", "peak MB"]
    tg = next(ln for ln in lines if "| tg32 " in ln)
    assert "57.6%" in tg and "19.00 tok/s" in tg and "18.70–19.40" in tg and "612" in tg
    pp = next(ln for ln in lines if "| pp128 " in ln)
    assert "—" in pp  # prefill has no bandwidth ceiling
    assert lines[-1] == "skipped onnx: no ONNX artifact given"
    assert len({len(ln) for ln in lines[:-1]}) == 1  # columns line up in a terminal


def test_terminal_chart_bars_scale_with_decode_speed(quick_result):
    refs = load_all([], include_references=True)
    chart = terminal_chart([quick_result, *refs], width=40)
    lines = chart.splitlines()
    assert lines[0].startswith("Decode tok/s")
    bars = [ln for ln in lines[1:] if "█" in ln or "▏" in ln]
    top = next(ln for ln in bars if "SmolLM2-135M" in ln)  # 165.2 tok/s, the fastest here
    ours = next(ln for ln in bars if "Xeon" in ln)
    assert top.count("█") == 40 and ours.count("█") == 4  # 19.0 / 165.2 of 40 cells, rounded down
    assert top.rstrip().endswith("165.2") and " * " in top  # published, marked
    assert not ours.split("█")[0].endswith("* ")
    assert lines[-1] == "* published reference, not measured here"
    assert terminal_chart([]) == "(no decode results to chart)"


def test_importing_compare_does_not_import_matplotlib():
    probe = "import sys, edgeai.bench.compare, edgeai.bench.importers; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


def test_reusing_the_output_folder_leaves_no_plot_of_an_earlier_comparison(tmp_path):
    out = tmp_path / "cmp"
    first = compare([FIXTURES / "edgeai-cuda-depth-readme.json"], out)
    assert "decode_vs_depth.png" in [p.name for p in first]
    (out / "notes.txt").write_text("mine")  # not a plot name: kept
    second = compare([FIXTURES / "llama-bench-rtx4080.json"], out)
    assert [p.name for p in second] == ["compare.md", "decode.png", "prefill.png"]
    assert sorted(p.name for p in out.iterdir()) == sorted([p.name for p in second] + ["notes.txt"])


@pytest.mark.parametrize("text, message", [
    ('[{"n_prompt": 0, "n_gen": 128, "samples_ts": []}]', "no samples"),
    ('[{"n_prompt": 0, "n_gen": 128, "n_depth": -4, "samples_ts": [5.0]}]', "n_depth: -4"),
    ("[" * 100_000, "truncated or not JSON"),
], ids=["no-samples", "negative-depth", "nested-too-deeply"])
def test_bad_or_deeply_nested_input_stops_compare_with_one_line(tmp_path, text, message):
    bad = tmp_path / "bad.json"
    bad.write_text(text)
    with pytest.raises(BadInput, match=message) as caught:
        compare([bad], tmp_path / "out")
    assert str(bad) in caught.value.message and "\n" not in caught.value.message
    assert not (tmp_path / "out").exists()


def test_runs_that_differ_only_in_a_setting_are_never_merged(quick_result, make_quick_result):
    """`bench llm --quick` at 2 threads and at 1 thread on one machine: two rows, two bars, two
    legend entries, each named by what differs; the same run twice: both kept, numbered."""
    from edgeai.bench.compare import compare_markdown, decode_bars, run_names
    from edgeai.bench.plots import bar_rows

    one = make_quick_result()
    for row in one["results"]:
        row["threads"] = 1
    one["settings"]["threads"] = 1
    results = [quick_result, one]
    rows = [r for r in table_rows(compare_markdown(results)) if r[4] == "tg32"]
    assert sorted((r[0], r[9]) for r in rows) == [("Xeon Platinum 8480+ · 2 cores · threads 1", "1"),
                                                   ("Xeon Platinum 8480+ · 2 cores · threads 2", "2")]
    assert len(decode_bars(results)) == 2 and len(terminal_chart(results).splitlines()) == 3
    assert sorted(b["device"] for b in bar_rows(results, "tg")) == [r[0] for r in sorted(rows)]
    twice = [quick_result, make_quick_result()]
    names = sorted(set(run_names(twice).values()))
    assert len(names) == 2 and names[0].endswith("#1") and names[1].endswith("#2")
    assert len([r for r in table_rows(compare_markdown(twice)) if r[4] == "tg32"]) == 2
    later = make_quick_result()
    later["created_utc"] = "2027-01-02T03:04:05Z"
    dated = sorted(set(run_names([quick_result, later]).values()))
    assert dated[1] == "Xeon Platinum 8480+ · 2 cores · 2027-01-02 03:04" and "#" not in "".join(dated)
