"""`edgeai finetune --eval OUT --data FILE`: the base and the tuned model side by side.

The run is made by hand (tests/edgeai_testing/tuned_runs.py) on a tiny Llama, so its answers are
noise; what is checked is that both models are measured on the same records' answers, that the
adapter is what differs between them, and that the table shows it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

pytest.importorskip("mlx_lm")

from edgeai_testing.tuned_runs import make_run  # noqa: E402

from edgeai.converters import convert  # noqa: E402
from edgeai.converters.finetune.evaluate import eval_table, evaluate_run  # noqa: E402
from edgeai.errors import BadInput  # noqa: E402

FACTS = Path(__file__).resolve().parents[3] / "converters" / "finetune" / "examples" / "edgeai-facts"


@pytest.fixture(scope="module")
def run(tiny_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    convert(tiny_models("llama"), root / "mlx", to="mlx", quant="fp32", check=False)
    return make_run(root / "run", root / "mlx", hf=tiny_models("llama"))


def test_evaluate_measures_base_and_tuned_on_the_held_out_answers(run):
    result = evaluate_run(run, FACTS / "test.jsonl", max_tokens=4)
    records = [json.loads(line) for line in (FACTS / "test.jsonl").read_text().splitlines() if line.strip()]
    assert result["records"] == len(records) == len(result["answers"])
    assert result["target_tokens"] > 10 * len(records)  # the answers' tokens, not the prompts'
    base, tuned = result["base"], result["tuned"]
    assert base["loss"] != pytest.approx(tuned["loss"], abs=1e-3)  # the adapter is what differs
    assert tuned["perplexity"] == pytest.approx(math.exp(tuned["loss"]))
    first = result["answers"][0]
    assert first["question"] == records[0]["messages"][0]["content"]
    assert first["expected"] == records[0]["messages"][-1]["content"]
    assert first["base"] != first["tuned"]
    table = eval_table(result)
    assert f"{base['loss']:.3f}" in table and f"{tuned['loss']:.3f}" in table
    assert "tuned 0/5, base 0/5" in table and "1. When I run edgeai models optimize" in table


def test_a_data_folder_is_evaluated_on_its_test_split(run):
    result = evaluate_run(run, FACTS, max_tokens=1)
    assert result["split"] == "test" and result["records"] == 5


def test_evaluate_refuses_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(BadInput, match="not a finished fine-tune run"):
        evaluate_run(tmp_path, FACTS / "test.jsonl")
