"""`edgeai models optimize`: build a model's true 4-bit exports and keep the faithful ones.

A candidate is a (format, quant) recipe whose 4-bit blocks fit the model's shapes: ONNX k-quant
int4 (onnxruntime-genai's builder) and GGUF block-32 types (Q4_0, IQ4_NL), which llama.cpp keeps
on rows that are not a multiple of 256 (its K-quants fall back to 5/8 bits there: Qwen 0.5B's
"Q4_K_M" is ~7.9 bits per weight). Every candidate is quantized from the model's 16-bit/fp32
Hugging Face import (never requantized from a 4-bit file) and goes through `edgeai convert`'s
staged export and validation, so each has a fidelity card; its perplexity ratio (export ÷ the
import, on the card's fixed text) decides: at most `threshold` it stays under
`<models_dir>/<id>/optimized/<format>-<quant>/` (models/installed.py), above it is deleted.
A killed run leaves no half export (converters/staging.py). Which kept export is fastest is
`doctor --tune`'s question, not this module's.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from edgeai.config import Settings
from edgeai.errors import BadInput, EdgeAIError
from edgeai.formats import FORMATS
from edgeai.models.catalog import Entry, find_entry, parse_id
from edgeai.models.installed import export_name, optimized_dir, read_export

THRESHOLD = 1.10  # the largest perplexity ratio an export may have to be kept
BLOCK = 32  # every candidate quantizes rows in blocks of 32 weights
# Tried in this order: the ONNX ones decoded fastest here (onnx-llm.md), the GGUF ones keep
# llama.cpp's chat features (KV state on disk).
CANDIDATES: tuple[tuple[str, str], ...] = (
    ("onnx", "int4-klast"),  # k-quant 4-bit, the LM head 8-bit
    ("onnx", "int4-kquant"),  # k_quant_mixed: also the most sensitive layers 8-bit
    ("onnx", "int4-kquant-h4"),  # those layers 8-bit, the LM head 4-bit: fewer bytes per token
    ("gguf", "Q4_0"),
    ("gguf", "IQ4_NL"),
)


@dataclass(frozen=True)
class Outcome:
    format: str
    quant: str
    path: Path
    ratio: float | None = None  # perplexity ratio to the 16-bit import
    size: int = 0
    seconds: float = 0.0  # export + validation
    peak_rss_mb: float | None = None
    kept: bool = False
    why: str = ""  # why it was not kept (or failed)
    reused: bool = False  # an earlier run had built it

    @property
    def name(self) -> str:
        return f"{self.format}:{self.quant.lower()}"


def parse_target(text: str) -> tuple[str, str]:
    """'onnx:int4-kquant' -> ('onnx', 'int4-kquant'), the quant spelled as the table spells it."""
    fmt, _, quant = text.partition(":")
    fmt = fmt.lower()
    if fmt not in FORMATS or not FORMATS[fmt].backend or not FORMATS[fmt].quants or not quant:
        runnable = [f for f in FORMATS.values() if f.backend and f.quants]
        what = "is not FORMAT:QUANT" if not quant else f"names no format edgeai can export and run ({fmt})"
        raise BadInput(f"--to {text!r} {what}",
                       "e.g. " + ", ".join(f"{f.name}:{f.quants[-1]}" for f in runnable))
    names = {q.lower(): q for q in FORMATS[fmt].quants}
    if quant.lower() not in names:
        raise BadInput(f"unknown quant {quant!r} for {fmt}", f"{fmt} takes: {' '.join(FORMATS[fmt].quants)}")
    return fmt, names[quant.lower()]


def fits(config: dict) -> bool:
    """Whether every weight row of an HF config splits into whole 32-blocks."""
    widths = [config.get("hidden_size"), config.get("intermediate_size")]
    heads, head_dim = config.get("num_attention_heads"), config.get("head_dim")
    if heads and head_dim:
        widths.append(heads * head_dim)
    return all(isinstance(w, int) and w % BLOCK == 0 for w in widths)


def candidates(config: dict) -> list[tuple[str, str]]:
    return list(CANDIDATES) if fits(config) else []


def import_source(model: str, settings: Settings, progress=None):
    """(catalog entry, the checked Source of its 16-bit/fp32 HF import), or a one-line refusal."""
    from edgeai.converters.source import hf_folder, open_source
    from edgeai.models.resolve import looks_like_path

    if looks_like_path(model) or model.startswith(("http://", "https://")):
        raise BadInput(f"models optimize takes a catalog id, not {model}",
                       "for a file or folder of yours: edgeai convert SRC --to FORMAT --quant Q -o OUT")
    entry = find_entry(parse_id(model)[0])
    try:
        source = open_source(entry.id, settings)
    except BadInput as exc:
        raise BadInput(f"{entry.id} has no source edgeai can import to Hugging Face form: {exc.message}",
                       "models optimize needs a GGUF or HF checkpoint of a supported family") from exc
    # the artifacts are named after the model, not after the import's cache folder
    return entry, replace(open_source(hf_folder(source, settings, progress)), name=entry.id)


def optimize(model: str, settings: Settings, *, to: tuple[str, str] | None = None,
             threshold: float = THRESHOLD, force: bool = False, progress=None,
             on_outcome: Callable[[Outcome], None] = lambda outcome: None) -> list[Outcome]:
    """Build (or reuse) each candidate of `model`, or only `to`; keep those within `threshold`."""
    entry, source = import_source(model, settings, progress)
    todo = [to] if to else candidates(source.config)
    if not todo:
        raise BadInput(f"{entry.id}'s weight rows are not multiples of {BLOCK}: no 4-bit candidate fits",
                       "name one with --to FORMAT:QUANT")
    return build(entry, source, todo, settings, threshold=threshold, force=force, progress=progress,
                 on_outcome=on_outcome, strict=to is not None)


def build(entry: Entry, source, todo: list[tuple[str, str]], settings: Settings, *,
          threshold: float = THRESHOLD, force: bool = False, progress=None,
          on_outcome: Callable[[Outcome], None] = lambda outcome: None,
          strict: bool = False) -> list[Outcome]:
    """Each (format, quant) of `todo` from the HF `source` into `entry`'s optimized folder; a
    failed candidate is reported and the next one tried (`strict`: raised)."""
    outcomes = []
    for fmt, quant in todo:
        try:
            outcome = _build(entry, source, fmt, quant, settings, threshold, force, progress)
        except (EdgeAIError, MemoryError) as exc:
            if strict:
                raise
            message = getattr(exc, "message", str(exc)) or type(exc).__name__
            outcome = Outcome(fmt, quant, optimized_dir(entry, settings) / export_name(fmt, quant),
                              why=f"failed: {message}")
        outcomes.append(outcome)
        on_outcome(outcome)
    return outcomes


def _build(entry: Entry, source, fmt: str, quant: str, settings: Settings, threshold: float,
           force: bool, progress) -> Outcome:
    import json
    import time

    from edgeai.converters import REPORT, convert

    out = optimized_dir(entry, settings) / export_name(fmt, quant)
    reused = out.is_dir() and read_export(out) is not None and not force
    start = time.perf_counter()
    if not reused:
        convert(source, out, to=fmt, quant=quant, force=force, progress=progress, settings=settings)
    report = json.loads((out / REPORT).read_text(encoding="utf-8")) if (out / REPORT).is_file() else {}
    ratio = report.get("perplexity_ratio")
    outcome = Outcome(fmt, quant, out, ratio, int(report.get("size_bytes") or 0),
                      round(report.get("convert_seconds", 0) + report.get("validate_seconds", 0), 1)
                      if reused else round(time.perf_counter() - start, 1),
                      report.get("peak_rss_mb"), reused=reused)
    if ratio is None:
        why = "no perplexity: the export could not be checked here"
    elif ratio > threshold:
        why = f"perplexity ratio {ratio:.3f} > {threshold:.2f}"
    else:
        return replace(outcome, kept=True)
    shutil.rmtree(out, ignore_errors=True)
    return replace(outcome, why=why)
