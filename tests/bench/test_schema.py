"""The bench result file: what validates, what is refused, and the one-line errors a user sees."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeai.bench.compare import load_references
from edgeai.bench.schema import (
    SCHEMA_VERSION,
    add_row,
    ceiling_pct,
    load_result,
    new_result,
    parse_result,
    save_result,
    validate,
)
from edgeai.errors import BadInput, EdgeAIError

FIXTURES = Path(__file__).parent / "fixtures" / "results"
REFERENCE = Path(__file__).parents[2] / "bench" / "reference"


def test_a_built_result_validates_and_survives_a_save_and_load(tmp_path, quick_result):
    result = quick_result
    assert validate(result) == []
    row = result["results"][0]
    assert (row["median"], row["min"], row["max"]) == (160.1, 158.9, 161.0)
    assert (row["n_prompt"], row["n_gen"], row["depth"]) == (128, 0, 0)
    path = save_result(result, tmp_path / "runs" / "r.json")
    assert load_result(path) == result
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]  # no temporary left behind


@pytest.mark.parametrize("path", sorted(REFERENCE.glob("*.json")) + sorted(FIXTURES.glob("edgeai-*.json")),
                         ids=lambda p: p.name)
def test_every_reference_and_result_fixture_validates(path):
    result = load_result(path)
    assert result["schema_version"] == SCHEMA_VERSION and result["results"]


def test_references_are_published_cited_and_loadable_from_the_package():
    refs = load_references()
    assert len(refs) == len(list(REFERENCE.glob("*.json"))) >= 6
    for ref in refs:
        assert ref["source"]["tool"] == "published"
        assert ref["source"]["citation"] and ref["source"]["url"].startswith("https://")
    chips = {r["device"]["apple"]["chip"] for r in refs if r["device"]["apple"]}
    assert chips == {"Apple M2", "Apple M4", "Apple M4 Pro", "Apple M4 Max"}
    assert any(r["device"]["jetson"] and r["device"]["jetson"]["bandwidth_gbps_spec"] == 102 for r in refs)


def test_the_m2_reference_is_84_percent_of_its_bandwidth_ceiling():
    """llama.cpp #4167: M2 Q4_0 tg128 21.91 t/s on 100 GB/s with a 3.56 GiB model."""
    m2 = next(r for r in load_references() if (r["device"]["apple"] or {}).get("chip") == "Apple M2")
    tg = next(row for row in m2["results"] if row["test"] == "tg128")
    assert tg["median"] == 21.91 and tg["bw_ceiling_pct"] == pytest.approx(83.8, abs=0.05)
    assert ceiling_pct(21.91, 3825065984, 100) == tg["bw_ceiling_pct"]


@pytest.mark.parametrize("change, problem", [
    (lambda r: r["results"][0].update(median=150.0), "results[0].median: 150.0 does not match"),
    (lambda r: r["results"][1].update(test="tg-32"), "results[1].test: 'tg-32' is not a test name"),
    (lambda r: r["results"][1].update(test="decode"), "is not a test name"),
    (lambda r: r["results"][1].update(n_gen=64), "test tg32 means n_prompt=0, n_gen=32"),
    (lambda r: r["results"][0].update(samples=[]), "results[0].samples: must be a non-empty list"),
    (lambda r: r["results"][0].update(samples=[1.0, True]), "results[0].samples"),
    (lambda r: r["results"][2].update(unit="tok/s"), "a ttft row is in s or ms"),
    (lambda r: r["results"][0].update(peak_rss_mb="612"), "results[0].peak_rss_mb"),
    (lambda r: r.update(schema_version=True), "schema_version"),
    (lambda r: r.update(created_utc="yesterday"), "created_utc"),
    (lambda r: r.update(suite="video"), "suite: 'video'"),
    (lambda r: r["source"].update(tool="published"), "a published result must cite"),
    (lambda r: r.update(skipped=[{"backend": "onnx"}]), "skipped[0]"),
])
def test_validate_names_each_problem(change, problem, quick_result):
    result = quick_result
    change(result)
    problems = validate(result)
    assert any(problem in p for p in problems), problems


def test_other_suites_name_their_own_tests(quick_result):
    result = new_result("embed", quick_result["device"], {}, {}, "here")
    add_row(result, backend="onnx", model="all-minilm-l6-v2", test="chunks", unit="chunks/s", samples=[410.0])
    assert validate(result) == []


def _error(path) -> BadInput:
    with pytest.raises(BadInput) as caught:
        load_result(path)
    message = caught.value.message
    assert "\n" not in message and caught.value.exit_code == 2
    return caught.value


def test_a_truncated_result_is_one_line_with_the_place(tmp_path, quick_result):
    text = json.dumps(quick_result, indent=2)
    cut = tmp_path / "cut.json"
    cut.write_text(text[: len(text) // 2])
    err = _error(cut)
    assert err.message.startswith(f"truncated or not JSON: {cut} (line ")
    assert " col " in err.message


def test_a_result_from_a_newer_schema_asks_for_an_upgrade(tmp_path, quick_result):
    future = quick_result | {"schema_version": 2}
    path = tmp_path / "future.json"
    path.write_text(json.dumps(future))
    err = _error(path)
    assert "written by a newer edgeai (schema 2); this edgeai reads schema 1 — upgrade" in err.message


@pytest.mark.parametrize("name, tool", [
    ("llama-bench-rtx4080.json", "llama-bench"), ("llama-bench-3090ti-legacy.jsonl", "llama-bench"),
    ("mlx-benchmark-m4-air-qwen7b.txt", "mlx_lm.benchmark"),
])
def test_another_tools_output_passed_as_a_result_says_how_to_import_it(name, tool):
    err = _error(FIXTURES / name)
    assert err.message == f"{FIXTURES / name} is {tool} output, not an edgeai bench result"
    assert f"edgeai bench import {FIXTURES / name} -o" in err.hint


def test_other_bad_files_get_one_line_each(tmp_path, quick_result):
    assert _error(tmp_path / "nope.json").message == f"no such bench result: {tmp_path / 'nope.json'}"
    assert "is a folder" in _error(tmp_path).message
    other = tmp_path / "other.json"
    other.write_text('{"name": "not a bench result"}')
    assert _error(other).message == f"not an edgeai bench result: {other}"
    broken = quick_result
    broken["results"][0]["median"] = 1.0
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(broken))
    assert _error(bad).message.startswith(f"{bad} is not a valid bench result: results[0].median")


def test_save_refuses_an_invalid_result_and_writes_nothing(tmp_path, quick_result):
    broken = quick_result
    broken["results"][0]["test"] = "fast"
    with pytest.raises(EdgeAIError):
        save_result(broken, tmp_path / "r.json")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("text", ["[" * 100_000, '{"kind": ' + "[" * 100_000, '{"a":' * 100_000],
                         ids=["arrays", "in-an-object", "objects"])
def test_deeply_nested_json_is_the_one_line_not_json_error(tmp_path, text):
    path = tmp_path / "deep.json"
    path.write_text(text)
    with pytest.raises(BadInput, match=rf"^truncated or not JSON: {path} \(nested too deeply\)$"):
        load_result(path)
    with pytest.raises(BadInput, match="truncated or not JSON"):
        parse_result(text)
