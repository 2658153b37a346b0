"""bench/mlx_cpu_profile.py on a tiny model: every mode trains, the parts add up to the step."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def tiny_mlx(tmp_path_factory):
    pytest.importorskip("mlx_lm")
    pytest.importorskip("transformers")
    from edgeai_testing.tiny_models import build_tiny_hf

    from edgeai import converters

    root = tmp_path_factory.mktemp("profile")
    mlx = root / "mlx"
    converters.convert(build_tiny_hf(root / "hf", "llama"), mlx, to="mlx", quant="fp32", check=False)
    return mlx


@pytest.mark.parametrize("mode", ["lora", "qlora", "qlora-deq"])
def test_step_trains_and_its_parts_add_up(tiny_mlx, mode):
    from edgeai.bench import mlx_cpu_profile

    result = mlx_cpu_profile.main(["step", str(tiny_mlx), "--mode", mode, "--steps", "3", "--seq", "32",
                                   "--layers", "2", "--parts", "--budget", "0"])
    losses = [row["loss"] for row in result["steps"]]
    assert losses[-1] < losses[0]  # the adapters train, whichever way the frozen base is computed
    assert result["peak_memory_mb"] > 0
    assert sum(result["parts_cpu_s"].values()) == pytest.approx(result["step_cpu_s"])


def test_ops_rates_every_kind(tiny_mlx, tmp_path):
    from edgeai.bench import mlx_cpu_profile

    result = mlx_cpu_profile.main(["ops", "--model", str(tiny_mlx), "--m", "8", "--kinds", "f32,bf16,q4g32",
                                   "--budget", "0", "--json", str(tmp_path / "ops.json")])
    assert {(r["kind"], r["op"]) for r in result["rows"]} == {
        (kind, op) for kind in ("f32", "bf16", "q4g32") for op in ("x@W.T", "g@W")}
    assert len(result["rows"]) == 6 * 8  # seven projections and the LM head
    assert all(r["gflops"] > 0 for r in result["rows"])
