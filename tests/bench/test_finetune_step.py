"""bench/finetune_step.py on a tiny model: both sides train, and the result has what the note reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.mark.slow  # two trainer processes and a model build: ~45 s on the shared 2-core machine
def test_finetune_step_runs_both_sides_on_one_config(tmp_path):
    pytest.importorskip("mlx_lm")
    pytest.importorskip("transformers")
    from edgeai_testing.tiny_models import build_tiny_hf

    from edgeai import converters
    from edgeai.bench import finetune_step

    mlx = tmp_path / "mlx"
    converters.convert(build_tiny_hf(tmp_path / "hf", "llama"), mlx, to="mlx", quant="fp32", check=False)
    out = tmp_path / "result.json"
    result = finetune_step.main([str(mlx), "--method", "lora", "--steps", "3", "--seq", "48",
                                 "--work", str(tmp_path / "work"), "--json", str(out)])

    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert result["settings"]["hyper"]["lora_layers"] == 2  # edgeai clamped 16 to the depth; raw got the same
    medians = result["medians"]
    assert result["ratio"] == pytest.approx(medians["edgeai"]["step_s"] / medians["raw"]["step_s"])
    for side in ("edgeai", "raw"):
        medians = result["medians"][side]
        assert medians["step_s"] > 0 and medians["tokens_per_s"] > 0 and medians["peak_memory_mb"] > 0
        assert medians["steps_counted"] == 1  # step 3 of 3 (steps 1-2 are compile and warm-up)
        steps = result["samples"][side][0]["steps"]
        assert [s["step"] for s in steps] == [1, 2, 3]
        # each record was truncated to the limit: 47 targets a step on both sides
        assert all(s["tokens_per_second"] * s["seconds"] == pytest.approx(47, rel=0.01) for s in steps)
    # the raw side trained what the edgeai side trained: the same adapter shapes
    edgeai_cfg = json.loads((tmp_path / "work" / "edgeai-1" / "adapter_config.json").read_text())
    raw_cfg = json.loads((tmp_path / "work" / "raw-1" / "adapter_config.json").read_text())
    for key in ("rank", "scale", "dropout"):
        assert edgeai_cfg["lora_parameters"][key] == raw_cfg["lora_parameters"][key]
    assert edgeai_cfg["num_layers"] == raw_cfg["num_layers"]


def test_float32_base_keeps_the_4bit_weights_and_widens_the_rest(tmp_path, monkeypatch):
    pytest.importorskip("mlx_lm")
    pytest.importorskip("transformers")
    import mlx.core as mx
    import numpy as np
    from edgeai_testing.tiny_models import build_tiny_hf

    from edgeai.bench import finetune_step

    monkeypatch.setenv("EDGEAI_HOME", str(tmp_path / "home"))
    hf = build_tiny_hf(tmp_path / "hf", "llama")
    copy = Path(finetune_step.float32_base(str(hf), tmp_path / "f32"))

    (made,) = (tmp_path / "home" / "cache" / "finetune-bases").iterdir()  # the base edgeai's QLoRA uses
    original, widened = mx.load(str(made / "model.safetensors")), mx.load(str(copy / "model.safetensors"))
    assert original.keys() == widened.keys()
    assert any(v.dtype == mx.uint32 for v in original.values())  # really quantized
    for key, value in original.items():
        if value.dtype == mx.uint32:
            assert widened[key].dtype == mx.uint32 and np.array_equal(np.array(value), np.array(widened[key]))
        else:
            assert widened[key].dtype == mx.float32
            assert np.allclose(np.array(value.astype(mx.float32)), np.array(widened[key]))
    assert json.loads((copy / "config.json").read_text())["quantization"]["bits"] == 4
