"""The `mlx` target: Hugging Face -> an MLX model folder, by mlx-lm's own `convert`.

OUT holds what `mlx_lm.convert` writes (`model.safetensors` + index, `config.json` with a
`quantization` block when quantized, the tokenizer files, the chat template, a model card) plus
the source's license files, and loads as is with `mlx_lm.load` and in the `mlx` backend
(runtime/mlx.py), which is also the validation runner. Recipes per `--quant`:

    fp32 bf16 fp16   a cast of every floating-point tensor
    8bit             affine 8-bit, group 64 (mlx-lm's default)
    4bit             mlx-lm's `mixed_4_6` recipe (its llama.cpp Q4_K_M-like mix: v_proj and
                     down_proj of the sensitive layers and the LM head in 6 bits), group 32; a
                     tied embedding, which is the LM head too, also gets 6 bits (llama.cpp gives
                     a tied output Q6_K; mlx-lm raises only a module named lm_head)

mlx-lm's learned quantizers (DWQ, AWQ, GPTQ, dynamic) need calibration text it downloads and a
training loop; edgeai is offline, so the 4-bit recipe is the best calibration-free one. Measured
on the Qwen2.5-Coder-0.5B import (dequantized weights, the 512-token eval text, perplexity vs
fp32): mixed_4_6 g32 x1.07, mixed_4_6 g64 x1.10, plain 4-bit g32 x1.12, plain 4-bit g64 x1.13;
8-bit g64 x1.00. On the Gemma-3-270M import (tied): mixed_4_6 g32 x1.34, x1.21 with the tied
embedding in 6 bits. Quantized exports keep their other tensors in fp16 (bf16 for Gemma).

Validation scores the whole eval text on every device. MLX on Linux runs on a reference BLAS
on one core (~2 GFLOP/s: 130 s for a 512-token forward of Gemma-270M, most of it the 262k-row
LM head), so a card takes minutes there; a 64-token text, tried first, moved the bf16 export
itself by 2.5% against its source, more than the 8-bit bar. On a CPU the backend dequantizes a
quantized export's layers at load (its quantized CPU kernels are ~40x slower, see
runtime/mlx.py): the card then checks the exported weights with dense kernels, and its runner
label says so.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

from edgeai.converters.progress import Progress
from edgeai.converters.runners import BackendRunner
from edgeai.converters.source import Source, hf_folder
from edgeai.errors import EdgeAIError, MissingExtra
from edgeai.formats import FORMATS

QUANTS = FORMATS["mlx"].quants
NOT_FOR_GEMMA = FORMATS["mlx"].not_for_gemma
INSTALL = "pip install 'edgeai[mlx]'"
DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
# --quant -> mlx_lm.convert keyword arguments (besides dtype)
RECIPES: dict[str, dict] = {
    "8bit": {"quantize": True, "q_bits": 8, "q_group_size": 64},
    "4bit": {"quantize": True, "q_bits": 4, "q_group_size": 32, "quant_predicate": "mixed_4_6"},
}
NOTES = {
    "8bit": "8bit: mlx-lm affine 8-bit, group size 64",
    "4bit": "4bit: mlx-lm's mixed_4_6 recipe (4-bit, with v_proj/down_proj of the sensitive layers "
            "and the LM head in 6 bits), group size 32; mlx-lm's learned quants (DWQ/AWQ/GPTQ) need "
            "downloaded calibration data and were not used",
    "tied": "4bit: the tied embedding is also the LM head, so it has the head's 6 bits",
}
STAGING = "_mlx_lm"  # mlx_lm.convert refuses an existing folder: it writes here, files move up


def require_mlx():
    """Import mlx-lm (and mlx under it), or say how to install it."""
    try:
        import mlx.core  # noqa: F401
        import mlx_lm
    except ImportError as exc:
        raise MissingExtra(f"MLX (mlx, mlx-lm) [{exc}]", INSTALL) from None
    return mlx_lm


def default_quant(family: str) -> str:
    return "bf16" if family == "gemma3" else "fp16"


def toolchain() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for tool in ("mlx", "mlx-lm", "transformers"):
        try:
            found[tool] = version(tool)
        except PackageNotFoundError:
            found[tool] = "not installed"
    return found


def convert_kwargs(quant: str, family: str, hf: Path | None = None) -> dict:
    """The keyword arguments of `mlx_lm.convert` for a --quant name (`hf`: the folder it will
    convert, which the 4-bit recipe looks at for a tied LM head)."""
    if quant in DTYPES:
        return {"dtype": DTYPES[quant]}
    # what stays unquantized (norms, biases, the scales themselves) in a 16-bit type that holds it
    kwargs = {"dtype": "bfloat16" if family == "gemma3" else "float16", **RECIPES[quant]}
    if hf is not None and kwargs.get("quant_predicate") == "mixed_4_6":
        kwargs["quant_predicate"] = mixed_4_6(hf, kwargs["q_group_size"])
    return kwargs


def mixed_4_6(hf: Path, group_size: int):
    """The 4-bit recipe's `quant_predicate`: mlx-lm's `mixed_4_6` as is (by name) for a model
    with its own lm_head; for a tied one, its predicate with the embedding at the head's 6 bits."""
    from mlx_lm.convert import mixed_quant_predicate_builder
    from mlx_lm.utils import load

    model = load(str(hf), lazy=True)[0]  # lazy: the module tree without reading any weights
    if any(path.endswith("lm_head") for path, _ in model.named_modules()):
        return "mixed_4_6"
    recipe = mixed_quant_predicate_builder("mixed_4_6", model, group_size)
    head = {"group_size": group_size, "bits": 6, "mode": "affine"}

    def predicate(path: str, module):
        return dict(head) if path.endswith("embed_tokens") else recipe(path, module)

    return predicate


def export(source: Source, stage: Path, quant: str, *, progress: Progress, notes: list[str],
           settings=None) -> list[str]:
    mlx_lm = require_mlx()
    hf = hf_folder(source, settings, progress)
    progress.start(f"mlx: converting to {quant} with mlx-lm", 1)
    target = stage / STAGING
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log):  # mlx-lm prints [INFO] lines over our progress bars
            kwargs = convert_kwargs(quant, source.family, hf)
            mlx_lm.convert(str(hf), str(target), **kwargs)
    except (ValueError, KeyError, FileNotFoundError) as exc:
        raise EdgeAIError(f"mlx-lm could not convert {hf.name}: {exc}",
                          "run with --debug to see mlx-lm's traceback") from exc
    for path in sorted(target.iterdir()):
        os.replace(path, stage / path.name)
    target.rmdir()
    finish_folder(hf, stage)
    record_sliding_pattern(stage / "config.json")
    progress.advance()
    if quant in NOTES:
        notes.append(NOTES[quant])
    if callable(kwargs.get("quant_predicate")):
        notes.append(NOTES["tied"])
    bits = next((line.strip() for line in log.getvalue().splitlines() if "bits per weight" in line), None)
    if bits:
        notes.append(f"mlx-lm: {bits.removeprefix('[INFO] ')}")
    if source.kind == "gguf" and quant.endswith("bit"):
        notes.append("the source is a dequantized GGUF: quantizing it again loses more than "
                     "quantizing the original weights would")
    return sorted(p.name for p in stage.iterdir() if p.name not in ("manifest.json", "report.json"))


def finish_folder(hf: Path, stage: Path) -> None:
    """Make mlx-lm's folder self-contained and free of paths into the source: license files and
    Gemma's tokenizer.model copied, absolute paths dropped from tokenizer_config.json."""
    from edgeai.converters.hf import make_self_contained

    make_self_contained(hf, stage)


def sliding_pattern(layer_types: list[str]) -> int:
    """The period of Gemma 3's local/global attention: every p-th layer is global."""
    period = layer_types.index("full_attention") + 1 if "full_attention" in layer_types else 0
    expected = ["full_attention" if period and i % period == period - 1 else "sliding_attention"
                for i in range(len(layer_types))]
    if not period or expected != layer_types:
        raise EdgeAIError("mlx-lm cannot represent this Gemma 3 attention layout "
                          f"({', '.join(layer_types)})",
                          "mlx-lm models one global layer every N layers, the rest sliding-window")
    return period


def record_sliding_pattern(config_file: Path) -> None:
    """transformers 5 describes Gemma 3's attention per layer (`layer_types`); mlx-lm 0.32 reads a
    period (`sliding_window_pattern`) and assumes 6 without one, which is wrong for any other
    layout: write the period the layers actually have."""
    from edgeai.fileio import atomic_write

    config = json.loads(config_file.read_text(encoding="utf-8"))
    layer_types = config.get("layer_types")
    if config.get("model_type") != "gemma3_text" or not layer_types:
        return
    config["sliding_window_pattern"] = sliding_pattern(layer_types)
    atomic_write(config_file, json.dumps(dict(sorted(config.items())), indent=4))  # mlx-lm's layout


class MlxRunner(BackendRunner):
    """An export through the `mlx` backend: logits for every position, reusing the KV cache
    when a call extends the previous one (validation's greedy loop adds one token at a time)."""

    def __init__(self, out: Path):
        from importlib.metadata import version

        from edgeai.runtime.mlx import MlxBackend, on_cpu

        require_mlx()
        super().__init__(MlxBackend(), "mlx", out, n_ctx=self.max_tokens)
        where = " (cpu, weights as exported, computed in fp32"
        if on_cpu():
            # The check is of the exported weights. On a CPU they are computed in fp32, as llama.cpp
            # computes a BF16 GGUF: MLX's bf16 arithmetic alone moved Gemma-270M's top-1 by 5 points.
            import mlx.core as mx

            self.backend._model.set_dtype(mx.float32)
            where += "; quantized layers dequantized)" if self.backend.dequantized else ")"
        self.label = f"mlx-lm {version('mlx-lm')}" + (where if on_cpu() else "")


def open_runner(out: Path) -> MlxRunner:
    return MlxRunner(out)
