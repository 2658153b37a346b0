"""`validate(src, out) -> Report`: the fidelity card of an export.

The source and the export each run through a Runner on the same token ids (the source's own
tokenizer makes them): teacher-forced top-1 agreement and max |Δlogit| over the fixed prompts
and text, perplexity on the text, 16 greedy tokens from the first prompt, and whether the
export's tokenizer gives the same ids. Where the export cannot run here (Core ML on Linux) the
card says so, says why, and carries the format's own static checks instead.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgeai.converters import eval_text
from edgeai.converters.manifest import Manifest, read_manifest
from edgeai.converters.progress import Progress
from edgeai.converters.source import Source, open_source

GREEDY_TOKENS = 16


@dataclass(frozen=True)
class Report:
    format: str
    quant: str
    reference: str  # how the source ran
    runner: str  # how the export ran
    numbers_checked: bool
    why_not_checked: str | None = None
    positions: int = 0
    top1_agreement: float | None = None
    first_divergence: dict | None = None
    max_abs_logit_delta: float | None = None
    perplexity: float | None = None
    perplexity_reference: float | None = None
    perplexity_ratio: float | None = None
    perplexity_tokens: int = 0
    perplexity_text: str = eval_text.NAME
    perplexity_text_shortened: bool = False
    greedy_equal: bool | None = None
    greedy_first_divergence: int | None = None
    tokenizer_ids_match: bool | None = None
    travelled: dict = field(default_factory=dict)  # tokenizer / chat_template / license -> bool
    spec: dict | None = None  # static checks (Core ML)
    size_bytes: int = 0
    convert_seconds: float = 0.0
    validate_seconds: float = 0.0
    peak_rss_mb: float | None = None
    toolchain: dict = field(default_factory=dict)

    def to_json(self) -> str:
        import json

        return json.dumps(asdict(self), indent=2) + "\n"


def _log_softmax_rows(logits):
    import numpy as np

    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def perplexity(logits, ids) -> float:
    """exp(mean negative log-likelihood of ids[1:] given the logits of ids[:-1])."""
    import numpy as np

    logp = _log_softmax_rows(logits[:-1].astype(np.float64))
    nll = -logp[np.arange(len(ids) - 1), np.asarray(ids[1:])]
    return float(math.exp(nll.mean()))


def greedy(runner, ids: list[int], n: int = GREEDY_TOKENS) -> list[int]:
    """n greedy tokens, each from a full teacher-forced pass (no cache: same path as the check)."""
    seq = list(ids)
    for _ in range(n):
        seq.append(int(runner.logits(seq)[-1].argmax()))
    return seq[len(ids):]


def _first_difference(a: list[int], b: list[int]) -> int | None:
    shorter = min(len(a), len(b))
    differing = (i for i in range(shorter) if a[i] != b[i])
    return next(differing, None if len(a) == len(b) else shorter)


def travelled(path: Path) -> dict[str, bool]:
    """Which of tokenizer, chat template and license notice a model file or folder carries."""
    from edgeai.converters.hf import is_notice
    from edgeai.gguf_info import read_header

    path = Path(path)
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    found = {"tokenizer": bool(names & {"tokenizer.json", "tokenizer.model"}),
             "chat_template": "chat_template.jinja" in names,
             "license": any(is_notice(n) for n in names)}
    for file in files:
        if file.name == "tokenizer_config.json" and '"chat_template"' in file.read_text(errors="replace"):
            found["chat_template"] = True
        if file.suffix == ".gguf":
            header = read_header(file)
            found["tokenizer"] |= header.get("tokenizer.ggml.model") is not None
            found["chat_template"] |= header.get("tokenizer.chat_template") is not None
            found["license"] |= bool(header.get("general.license"))
    return found


def reference_runner(source: Source):
    from edgeai.converters.runners import LlamaCppRunner, TorchRunner

    return TorchRunner(source.path) if source.kind == "hf" else LlamaCppRunner(source.path)


def validate(src: str | Path | Source, out: Path, *, progress: Progress | None = None,
             manifest: Manifest | None = None) -> Report:
    """Compare the export in `out` with its source and return (not write) the report."""
    from edgeai.converters import target

    progress = progress or Progress()
    source = src if isinstance(src, Source) else open_source(src)
    manifest = manifest or read_manifest(out)
    module = target(manifest.format)
    start = time.perf_counter()
    src_has = travelled(source.path)
    out_has = travelled(out)
    common = dict(format=manifest.format, quant=manifest.quant, size_bytes=manifest.size_bytes,
                  convert_seconds=manifest.seconds, peak_rss_mb=manifest.peak_rss_mb,
                  toolchain=manifest.toolchain,
                  travelled={k: out_has[k] for k, had in src_has.items() if had})
    reason = module.runs_here() if hasattr(module, "runs_here") else None
    if reason:
        return Report(reference="-", runner="-", numbers_checked=False, why_not_checked=reason,
                      spec=module.check_spec(out), validate_seconds=time.perf_counter() - start, **common)
    progress.start("validating: loading the source", 5)
    ref = reference_runner(source)
    try:
        progress.advance()
        progress.start("validating: loading the export", 4)
        exp = module.open_runner(out)
        try:
            figures = _compare(ref, exp, progress)
        finally:
            exp.close()
    finally:
        ref.close()
    return Report(reference=ref.label, runner=exp.label, numbers_checked=True,
                  validate_seconds=time.perf_counter() - start, **figures, **common)


def _compare(ref, exp, progress: Progress) -> dict:
    import numpy as np

    limit = min(ref.max_tokens, exp.max_tokens, eval_text.PPL_TOKENS)
    text_ids = ref.encode(eval_text.TEXT)[:limit]
    prompts = [ref.encode(p) for p in eval_text.PROMPTS]
    tokenizer_ok = all(exp.encode(t)[:limit] == ids for t, ids in
                       zip((*eval_text.PROMPTS, eval_text.TEXT), (*prompts, text_ids), strict=True))
    progress.advance()
    agree = total = 0
    max_delta = 0.0
    divergence = None
    text_logits = {}
    for index, ids in enumerate((*prompts, text_ids)):
        a, b = ref.logits(ids), exp.logits(ids)
        vocab = min(a.shape[1], b.shape[1])
        a, b = a[:, :vocab], b[:, :vocab]
        top_a, top_b = a.argmax(axis=1), b.argmax(axis=1)
        agree += int((top_a == top_b).sum())
        total += len(ids)
        max_delta = max(max_delta, float(np.abs(a - b).max()))
        miss = np.flatnonzero(top_a != top_b)
        if divergence is None and miss.size:
            pos = int(miss[0])
            divergence = {"sequence": index, "position": pos, "source_token": int(top_a[pos]),
                          "export_token": int(top_b[pos])}
        if index == len(prompts):
            text_logits = {"ref": a, "exp": b}
    progress.advance()
    ppl_ref = perplexity(text_logits["ref"], text_ids)
    ppl_exp = perplexity(text_logits["exp"], text_ids)
    greedy_ref = greedy(ref, prompts[0])
    progress.advance()
    greedy_exp = greedy(exp, prompts[0])
    progress.advance()
    return dict(positions=total, top1_agreement=agree / total, first_divergence=divergence,
                max_abs_logit_delta=max_delta, perplexity=ppl_exp, perplexity_reference=ppl_ref,
                perplexity_ratio=ppl_exp / ppl_ref, perplexity_tokens=len(text_ids),
                perplexity_text_shortened=limit < eval_text.PPL_TOKENS,
                greedy_equal=greedy_ref == greedy_exp,
                greedy_first_divergence=_first_difference(greedy_ref, greedy_exp),
                tokenizer_ids_match=tokenizer_ok)
