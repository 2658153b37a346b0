"""A finished fine-tune run folder (OUT), made by hand in a second instead of by training.

mlx-lm's own `linear_to_lora_layers` puts LoRA (or DoRA) layers on a loaded MLX base; their
`lora_b`, which training starts at zero, is set to seeded noise so the adapter really changes
the model's outputs. OUT then holds what `edgeai finetune` writes there (docs/finetune-design.md):
`adapters.safetensors` and `adapter_config.json` in mlx-lm's layout, and `manifest.json`.
"""

from __future__ import annotations

import json
from pathlib import Path


def make_run(out: Path, base_mlx: Path, *, method: str = "lora", hf: Path | None = None,
             gguf: Path | None = None, quantized: str | None = None, rank: int = 4, scale: float = 2.0,
             layers: int = 2, strength: float = 0.2, seed: int = 1) -> Path:
    """Write a run of `method` (lora | dora) on `base_mlx` into the new folder `out`."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm import load
    from mlx_lm.tuner.utils import linear_to_lora_layers

    out = Path(out)
    out.mkdir(parents=True)
    params = {"rank": rank, "scale": scale, "dropout": 0.0}
    model, _ = load(str(base_mlx))
    model.freeze()
    mx.random.seed(seed)
    linear_to_lora_layers(model, layers, params, use_dora=method == "dora")
    for _, module in model.named_modules():
        if "lora_b" in module:  # training starts it at zero; a trained one is anything but
            module.lora_b = mx.random.normal(module.lora_b.shape) * strength
    mx.save_safetensors(str(out / "adapters.safetensors"), dict(tree_flatten(model.trainable_parameters())))
    config = {"model": str(base_mlx), "fine_tune_type": method, "num_layers": layers,
              "lora_parameters": params}
    (out / "adapter_config.json").write_text(json.dumps(config, indent=1))
    base = {"source": str(hf or base_mlx), "kind": "hf" if hf else "mlx", "mlx_path": str(base_mlx),
            "hf_path": str(hf) if hf else None, "gguf_path": str(gguf) if gguf else None, "sha256": "",
            "quantized": quantized}
    manifest = {"base": base, "method": "qlora" if quantized else method,
                "hyper": {"max_seq_len": 256, "batch_size": 2, "rank": rank, "alpha": scale * rank}}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return out
