"""The `coreml` target: an HF checkpoint -> `OUT/<name>.mlpackage` (mlprogram) + tokenizer files.

transformers (fp16; fp32 for Gemma) -> a wrapper with an explicit all-ones `attention_mask` and no cache ->
`torch.export` with a flexible sequence length (1..N) -> `run_decompositions()` ->
`coremltools.convert(..., mlprogram)` for macOS 14 / iOS 17 (iOS 18 for int4 per-block), with
the compressed quants' `coremltools.optimize.coreml` pass run inside that conversion. One
function, `input_ids -> logits` for a whole sequence: no KV cache in v1 (see `STATEFUL_NOTE`).
Gemma is converted with fp32 compute precision, because the family overflows in fp16. Core ML
predicts only on macOS; elsewhere the report carries `check_spec` (coreml_spec.py) instead.
"""

from __future__ import annotations

import gc
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from edgeai.converters.progress import Progress
from edgeai.converters.source import Source, hf_folder
from edgeai.errors import EdgeAIError
from edgeai.formats import FORMATS

QUANTS = FORMATS["coreml"].quants
# (none: Gemma converts in fp32 compute precision instead, see export)
NOT_FOR_GEMMA = FORMATS["coreml"].not_for_gemma
MAX_TOKENS = 4096  # the longest input the package accepts (capped by the model's own limit)
EXAMPLE_TOKENS = 8  # length of the example input torch.export traces with
BLOCK = 32  # int4-block: weights per scale
# Tried with transformers' TorchExportableModuleWithStaticCache -> torch.export(strict) -> coremltools 9.
STATEFUL_NOTE = (
    "no KV cache: each token recomputes the whole sequence (a stateful iOS 18 variant does not convert "
    "with coremltools 9: its index_put converter fails on the static cache's update, and the cache's "
    "scalar position buffers become rank-0 states it cannot type)")
HINT = "run with --debug for the traceback; coremltools {ct} is tested with torch up to 2.7 (this is {torch})"


def default_quant(family: str) -> str:
    return "fp16"


def toolchain() -> dict[str, str]:
    from importlib.metadata import version

    return {name: version(name) for name in ("coremltools", "torch", "transformers")}


def runs_here() -> str | None:
    from edgeai.runtime.coreml import NOT_HERE

    return None if sys.platform == "darwin" else NOT_HERE


def check_spec(out: Path) -> dict:
    from edgeai.converters.coreml_spec import check_spec as check

    return check(out)


class CoreMLRunner:
    """An export through the Core ML runtime (macOS only); the export's tokenizer encodes."""

    label = "Core ML (mlprogram, compute units: all)"

    def __init__(self, out: Path):
        from transformers import AutoTokenizer

        from edgeai.runtime.coreml import find_package, open_mlmodel, padded

        predict, shortest, self.max_tokens = open_mlmodel(find_package(Path(out)))
        self._predict = padded(predict, shortest)
        self.tokenizer = AutoTokenizer.from_pretrained(str(out))

    def logits(self, ids: Sequence[int]):
        return self._predict(list(ids))

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text)["input_ids"])

    def close(self) -> None:
        self._predict = None


def open_runner(out: Path) -> CoreMLRunner:
    return CoreMLRunner(out)


def _failed(stage: str, exc: BaseException) -> EdgeAIError:
    from importlib.metadata import version

    first = (str(exc).strip().splitlines() or [""])[0][:300]
    return EdgeAIError(f"Core ML conversion failed while {stage}: {type(exc).__name__}: {first}",
                       HINT.format(ct=version("coremltools"), torch=version("torch")))


def _load(folder: Path, fp32: bool):
    import torch
    from transformers import AutoModelForCausalLM

    class Logits(torch.nn.Module):
        """input_ids -> logits, with the mask transformers 5 needs to be traceable and no cache."""

        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids):
            return self.model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                              use_cache=False).logits

    from edgeai.runtime.coreml import quiet

    # Loading in fp16 halves the conversion's peak memory. On the tiny llama and qwen2 it gave the
    # same MIL program as loading in fp32 and letting coremltools cast (same op histogram, same
    # constant values); Gemma stays fp32 because it is computed in fp32.
    with quiet():  # no 'Loading weights' bar under our own progress display
        model = AutoModelForCausalLM.from_pretrained(
            str(folder), dtype=torch.float32 if fp32 else torch.float16, attn_implementation="sdpa")
    return Logits(model.eval())


def _export(wrapper, longest: int, notes: list[str]):
    """The exported program, trying a 1-token minimum first (torch specializes sizes 0/1 in some
    versions; then the minimum is 2 and the runtime pads a 1-token input)."""
    import torch

    example = torch.arange(min(EXAMPLE_TOKENS, longest), dtype=torch.long).unsqueeze(0)
    error = None
    for shortest in (1, 2):
        seq = torch.export.Dim("seq", min=shortest, max=longest)
        try:
            program = torch.export.export(wrapper, (example,), dynamic_shapes={"input_ids": {1: seq}})
        except Exception as exc:  # torch raises several UserError/constraint types
            error = exc
            continue
        if shortest > 1:
            notes.append("torch.export would not take 1-token inputs; the package takes 2..N and the "
                         "runtime pads a single token")
        return program.run_decompositions()
    raise _failed("tracing the model with torch.export", error) from error


def _register_alias() -> None:
    """torch >= 2.6 exports `aten.alias`, which coremltools 9 has no converter for: an identity."""
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.frontend.torch.ops import _get_inputs
    from coremltools.converters.mil.frontend.torch.torch_op_registry import (
        _TORCH_OPS_REGISTRY,
        register_torch_op,
    )

    if _TORCH_OPS_REGISTRY.get_func("alias") is not None:  # registered once per process
        return

    def alias(context, node):
        context.add(mb.identity(x=_get_inputs(context, node)[0], name=node.name))

    register_torch_op(alias)


def _convert(program, quant: str, *, fp32: bool, notes: list[str]):
    """ct.convert, with the quant's compression pass run inside the conversion pipeline: the
    post-training API would copy the whole program first (measured on the Qwen 0.5B int8:
    8.2 GB peak that way)."""
    from edgeai.runtime.coreml import import_coremltools, quiet

    ct = import_coremltools()
    _register_alias()
    pipeline = ct.PassPipeline.DEFAULT
    if quant != "fp16":
        name, config = compression(quant, fp32_weights=fp32)
        pipeline.append_pass(name)
        pipeline.set_options(name, {"config": config})
        for cleanup in ct.PassPipeline.CLEANUP.passes:  # what the post-training API runs after its pass
            pipeline.append_pass(cleanup)
    with quiet() as records:
        mlmodel = ct.convert(
            program, outputs=[ct.TensorType(name="logits")], convert_to="mlprogram",
            minimum_deployment_target=ct.target.iOS18 if quant == "int4-block" else ct.target.macOS14,
            compute_precision=ct.precision.FLOAT32 if fp32 else ct.precision.FLOAT16, pass_pipeline=pipeline)
    _note_skipped(quant, records, notes)
    return mlmodel


def kmeans_lut(weight, nbits: int = 4, rounds: int = 30):
    """(LUT, uint8 indices) by weighted 1-D k-means over the fp16-rounded values of `weight`.

    coremltools clusters fp16 weights with its bundled 1-D k-means but fp32 ones (Gemma, kept
    in fp32) with scikit-learn; this keeps the same recipe without that dependency."""
    import numpy as np

    values, inverse, counts = np.unique(weight.reshape(-1).astype(np.float16), return_inverse=True,
                                        return_counts=True)
    values = values.astype(np.float64)
    cdf = np.cumsum(counts) / counts.sum()
    k = 1 << nbits
    centers = np.unique(values[np.minimum(np.searchsorted(cdf, (np.arange(k) + 0.5) / k), len(values) - 1)])
    for _ in range(rounds):  # Lloyd's iterations from quantile starts
        slot = np.searchsorted((centers[1:] + centers[:-1]) / 2, values)
        mass = np.bincount(slot, weights=counts, minlength=len(centers))
        moved = np.where(mass > 0, np.bincount(slot, weights=values * counts, minlength=len(centers))
                         / np.maximum(mass, 1), centers)
        if np.allclose(moved, centers):
            break
        centers = moved
    lut = np.zeros(k, dtype=weight.dtype)
    lut[:len(centers)] = centers
    indices = np.searchsorted((centers[1:] + centers[:-1]) / 2, values)[inverse.reshape(-1)]
    return lut, indices.astype(np.uint8)


def compression(quant: str, *, fp32_weights: bool):
    """(pass name, OptimizationConfig) of a compressed quant, from coremltools.optimize.coreml."""
    import coremltools.optimize.coreml as cto

    if quant == "palette4":
        config = (cto.OpPalettizerConfig(mode="custom", lut_function=kmeans_lut) if fp32_weights
                  else cto.OpPalettizerConfig(mode="kmeans", nbits=4, granularity="per_tensor"))
        return "compression::palettize_weights", cto.OptimizationConfig(global_config=config)
    if quant == "int8":
        config = cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel")
    elif quant == "int4-block":  # per-block scales exist from iOS 18 on
        config = cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int4", granularity="per_block",
                                             block_size=BLOCK)
    else:
        raise ValueError(f"no compression for {quant!r}")
    return "compression::linear_quantize_weights", cto.OptimizationConfig(global_config=config)


def _note_skipped(quant: str, records, notes: list[str]) -> None:
    skipped = [r.getMessage() for r in records if "skip" in r.getMessage().lower()]
    if skipped:
        notes.append(f"{quant}: coremltools left {len(skipped)} weight(s) uncompressed, "
                     f"e.g. {skipped[0][:160]}")


def compress(mlmodel, quant: str, *, fp32_weights: bool, notes: list[str]):
    """An existing (uncompressed) Core ML model compressed the way `export` compresses it."""
    import coremltools.optimize.coreml as cto

    from edgeai.runtime.coreml import quiet

    name, config = compression(quant, fp32_weights=fp32_weights)
    apply = cto.palettize_weights if name.endswith("palettize_weights") else cto.linear_quantize_weights
    with quiet() as records:
        compressed = apply(mlmodel, config)
    _note_skipped(quant, records, notes)
    return compressed


def _describe(mlmodel, source: Source, quant: str, fp32: bool, longest: int) -> None:
    from edgeai import __version__

    mlmodel.short_description = (f"{source.name} ({source.family}), exported by edgeai {__version__}: "
                                  "token ids -> next-token logits")
    mlmodel.input_description["input_ids"] = f"token ids, int32, shape (1, 1..{longest})"
    mlmodel.output_description["logits"] = "logits for every position, shape (1, length, vocab)"
    mlmodel.user_defined_metadata.update({
        "edgeai.family": source.family, "edgeai.quant": quant, "edgeai.source": source.name,
        "edgeai.compute_precision": "fp32" if fp32 else "fp16", "edgeai.max_tokens": str(longest)})


def _copy_companions(folder: Path, stage: Path) -> list[str]:
    """Tokenizer, chat template, configs and license notices, next to the package."""
    from edgeai.converters.hf import KEEP, copy_notices

    copied = []
    for name in (*KEEP, "config.json"):
        if (folder / name).is_file():
            shutil.copy2(folder / name, stage / name)
            copied.append(name)
    return copied + copy_notices(folder, stage)


def export(source: Source, stage: Path, quant: str, *, progress: Progress, notes: list[str],
           settings=None) -> list[str]:
    from edgeai.runtime.coreml import quiet
    from edgeai.runtime.model_files import read_json

    folder = hf_folder(source, settings, progress)
    fp32 = source.family == "gemma3"
    limit = read_json(folder / "config.json").get("max_position_embeddings")
    longest = min(MAX_TOKENS, limit) if isinstance(limit, int) and limit > 1 else MAX_TOKENS
    progress.start("export", 2)
    try:
        wrapper = _load(folder, fp32)
    except Exception as exc:  # transformers raises many types for a checkpoint it cannot read
        raise _failed(f"loading {folder.name} with transformers", exc) from exc
    progress.advance()
    with quiet():  # torch.export warns about deprecated pytree internals on every call
        program = _export(wrapper, longest, notes)
    del wrapper
    progress.advance()
    # compression runs inside the conversion (one pass over the program, no copy of it)
    progress.start("convert" if quant == "fp16" else f"convert and compress ({quant})", 1)
    try:
        mlmodel = _convert(program, quant, fp32=fp32, notes=notes)
    except Exception as exc:
        raise _failed("converting with coremltools" if quant == "fp16" else f"converting to {quant}", exc) \
            from exc
    del program
    gc.collect()  # the torch weights are no longer needed; the MIL program holds its own
    progress.advance()
    _describe(mlmodel, source, quant, fp32, longest)
    package = f"{source.name}.mlpackage"
    mlmodel.save(str(stage / package))
    target = "iOS 18 / macOS 15" if quant == "int4-block" else "macOS 14 / iOS 17"
    notes.append(f"mlprogram for {target}; input_ids (1 x 1..{longest}) -> logits; {STATEFUL_NOTE}")
    if fp32:
        notes.append("Gemma: converted with fp32 compute precision (the family overflows in fp16), "
                     "so 'fp16' keeps fp32 weights; compressed quants store their own weight types")
    return [package, *_copy_companions(folder, stage)]
