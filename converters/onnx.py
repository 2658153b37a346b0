"""The `onnx` target: Hugging Face -> an onnxruntime-genai model folder (decoder + KV cache).

Wraps onnxruntime-genai's model builder, run as a subprocess (`converters/onnx_builder.py`,
which adds the Gemma 3 rope fix), on the HF folder `hf_folder` gives for any source. OUT then
holds `model.onnx`, `model.onnx.data`, `genai_config.json`, the tokenizer files, the chat
template and the license files, and loads as is in the `onnx` backend (runtime/onnx.py), which
is also the validation runner. Build recipes per `--quant` (measured in
/work/shared/research/onnx-llm.md; tied embeddings stay shared in every recipe):

    fp32         the builder's CPU graph: matches transformers to ~1e-4 on Qwen 0.5B
    fp16         the builder's GPU graph (`-e cuda`); onnxruntime runs it on the CPU too
    int8         MatMulNBits 8-bit weights (block 32, int8 activations); embedding fp32
    int4         RTN 4-bit, block 32, the embedding Gather quantized too: the smallest
    int4-kquant  k_quant_mixed: 4-bit k-quants, LM head and sensitive layers 8-bit; ~11 GB RAM for 0.5B
    int4-klast   k_quant_last: 4-bit k-quants, only the LM head 8-bit (smaller and faster than kquant)
    int4-kquant-h4  k-quants, the sensitive layers 8-bit as in kquant, the LM head 4-bit (faster decode)

The builder runs with the hub switched off, dies with edgeai (kill -9 included), and its
last lines become a one-line error (the whole tail is in the `--debug` traceback).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import deque
from pathlib import Path

from edgeai.converters.progress import Progress
from edgeai.converters.runners import BackendRunner
from edgeai.converters.source import Source, hf_folder, unsupported
from edgeai.errors import EdgeAIError, MissingExtra
from edgeai.formats import FORMATS

QUANTS = FORMATS["onnx"].quants
NOT_FOR_GEMMA = FORMATS["onnx"].not_for_gemma

# --quant -> (builder precision, execution provider, extra options)
RECIPES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "fp32": ("fp32", "cpu", ()),
    # The builder's CPU fp16 graph prefills but fails to decode in onnxruntime-genai 0.18
    # (a buffer shape mismatch); the CUDA graph (fused GroupQueryAttention) runs on both.
    "fp16": ("fp16", "cuda", ()),
    "int8": ("int8", "cpu", ()),
    "int4": ("int4", "cpu", ("op_types_to_quantize=MatMul/Gather",)),
    "int4-kquant": ("int4", "cpu", ("algo_config=k_quant_mixed",)),
    "int4-klast": ("int4", "cpu", ("algo_config=k_quant_last",)),
    "int4-kquant-h4": ("int4", "cpu", ("algo_config=k_quant", "matmul_mixed_precision=mixed_layers:int8")),
}
NOTES = {
    "fp16": "fp16: the builder's GPU graph (-e cuda, fused attention); it runs on the CPU as well",
    "int8": "int8: MatMulNBits 8-bit weights, block 32, symmetric, int8 activations (accuracy_level 4); "
            "the embedding stays fp32 (the builder quantizes a Gather to 4 bits only)",
    "int4": "int4: RTN 4-bit, block 32, symmetric; MatMuls and the embedding Gather quantized "
            "(op_types_to_quantize=MatMul/Gather)",
    "int4-kquant": "int4-kquant: k_quant_mixed (4-bit k-quants; the LM head and the most sensitive "
                   "layers in 8 bits); needs about 11 GB of RAM per 0.5B parameters to build",
    "int4-klast": "int4-klast: k_quant_last (4-bit k-quants everywhere but the LM head, which is 8-bit); "
                  "needs about 11 GB of RAM per 0.5B parameters to build",
    "int4-kquant-h4": "int4-kquant-h4: k-quants with the most sensitive layers 8-bit, as int4-kquant, "
                      "but the LM head 4-bit (a large vocabulary's head is read on every token)",
}
# Hugging Face architectures this target has been validated on (the builder knows more).
ARCHITECTURES = ("LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM", "Gemma3ForCausalLM")
TOOLS = ("onnxruntime", "onnxruntime-genai", "onnx", "torch", "transformers")
CACHE = "_builder_cache"
PROGRESS_LINE = re.compile(r"^(Reading (embedding layer|layer \d+|final norm|LM head)|"
                           r"Saving (ONNX model|GenAI config|processing files))")
ERROR_LINE = re.compile(r"^[A-Za-z_.]*(Error|Exception|Interrupt)\b.*")


def default_quant(family: str) -> str:
    return "fp32"


def toolchain() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for tool in TOOLS:
        try:
            found[tool] = version(tool)
        except PackageNotFoundError:
            found[tool] = "not installed"
    return found


def _require_builder() -> None:
    import importlib.util

    for module in ("onnxruntime_genai", "onnx", "torch", "transformers"):
        if importlib.util.find_spec(module) is None:
            raise MissingExtra(f"{module} (needed by the ONNX export)", "pip install 'edgeai[convert]'")


def _is_tied(hf: Path, config: dict) -> bool:
    if "tie_word_embeddings" in config:
        return bool(config["tie_word_embeddings"])
    from transformers import AutoConfig  # the class default (Gemma ties, Llama does not)

    return bool(getattr(AutoConfig.from_pretrained(str(hf)), "tie_word_embeddings", False))


def builder_command(hf: Path, stage: Path, quant: str, config: dict, tied: bool) -> list[str]:
    precision, provider, extra = RECIPES[quant]
    # hf_token=false: the builder must never ask the hub for anything.
    options = [*extra, "hf_token=false"]
    if tied and precision == "int4":  # one quantized matrix serves embedding and LM head
        options.append("shared_embeddings=true")
    elif tied and precision == "int8":
        # The builder quantizes an embedding Gather to 4 bits only: an int8 LM head would be a
        # second copy of the (fp32) embedding. Keep the head fp32 and share it (Gemma 270M:
        # ~0.8 GB instead of 1.1 GB).
        options += ["nodes_to_exclude=/lm_head/MatMul", "shared_embeddings=true"]
    window, context = config.get("sliding_window"), config.get("max_position_embeddings")
    if window and context and window >= context:
        # A window as long as the context is no window; the windowed cache would still demand
        # a KV buffer of the window's length, which genai refuses to allocate past the context.
        options.append("windowed_kv_cache=false")
    return [sys.executable, "-m", "edgeai.converters.onnx_builder", "-i", str(hf), "-o", str(stage),
            "-p", precision, "-e", provider, "-c", str(stage / CACHE), "--extra_options", *options]


def run_builder(command: list[str], progress: Progress) -> None:
    """Run the builder, moving `progress` on its "Reading layer N" lines; one-line error on failure."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
           "TQDM_DISABLE": "1"}
    tail: deque[str] = deque(maxlen=40)
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                            preexec_fn=_die_with_parent if sys.platform == "linux" else None)
    try:
        buffer = b""
        while chunk := proc.stdout.read1(65536):
            buffer += chunk
            *lines, buffer = re.split(rb"[\r\n]", buffer)
            for raw in lines:
                line = raw.decode("utf-8", errors="replace").strip()
                if line:
                    tail.append(line)
                    if PROGRESS_LINE.match(line):
                        progress.advance()
        if buffer.strip():
            tail.append(buffer.decode("utf-8", errors="replace").strip())
        code = proc.wait()
    finally:
        if proc.poll() is None:  # interrupted: do not leave a builder running on its own
            proc.kill()
            proc.wait()
    if code != 0:  # the builder's own lines ride along for --debug's traceback
        raise _failure(code, list(tail)) from RuntimeError("the builder's last lines:\n" + "\n".join(tail))


def _die_with_parent() -> None:
    """In the builder's process: be killed with edgeai (kill -9 included), so a killed
    conversion leaves no orphan writing into a folder the next run cleans away."""
    import ctypes
    import signal

    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _failure(code: int, tail: list[str]) -> EdgeAIError:
    if code in (-9, 137):
        return EdgeAIError("onnxruntime-genai's model builder was killed (out of memory?)",
                           "int4-kquant needs about 11 GB of RAM per 0.5B parameters; try int4 or fp32")
    errors = [line for line in tail if ERROR_LINE.match(line)]
    detail = errors[-1] if errors else (tail[-1] if tail else f"exit status {code}")
    return EdgeAIError(f"onnxruntime-genai's model builder failed: {detail[:300]}",
                       "run again with --debug to see the builder's last lines")


def export(source: Source, stage: Path, quant: str, *, progress: Progress, notes: list[str],
           settings=None) -> list[str]:
    _require_builder()
    hf = hf_folder(source, settings, progress)
    config = json.loads((hf / "config.json").read_text(encoding="utf-8"))
    arch = (config.get("architectures") or [""])[0]
    if arch not in ARCHITECTURES:
        raise unsupported(arch or config.get("model_type", "?"))
    tied = _is_tied(hf, config)
    command = builder_command(hf, stage, quant, config, tied)
    # one step per line the builder prints: embedding, each layer, norm, head, three saves
    progress.start(f"onnx: building {quant} with onnxruntime-genai",
                   int(config.get("num_hidden_layers") or 0) + 6)
    try:
        run_builder(command, progress)
    finally:
        shutil.rmtree(stage / CACHE, ignore_errors=True)
    finish_folder(hf, stage)
    if quant in NOTES:
        notes.append(NOTES[quant])
    if tied and quant.startswith("int"):
        notes.append("tied embeddings: the embedding and the LM head share one matrix "
                     + ("(fp32)" if quant == "int8" else "(quantized)"))
    if source.kind == "gguf" and quant.startswith("int"):
        notes.append("the source is a dequantized GGUF: quantizing it again loses more than "
                     "quantizing the original weights would")
    return sorted(p.name for p in stage.iterdir() if p.name not in ("manifest.json", "report.json"))


def finish_folder(hf: Path, stage: Path) -> None:
    """Make the builder's folder self-contained: license files and Gemma's tokenizer.model
    copied from the source, no paths into the source left in tokenizer_config.json, and the
    chat template written where the builder's tokenizer save did not carry it."""
    from edgeai.converters.hf import make_self_contained
    from edgeai.fileio import atomic_write

    make_self_contained(hf, stage)
    if not (stage / "chat_template.jinja").is_file():
        from edgeai.runtime.model_files import own_template

        template = own_template(hf)
        if template:
            atomic_write(stage / "chat_template.jinja", template)


class OnnxRunner(BackendRunner):
    """An export through the `onnx` backend: full-sequence logits from a fresh KV cache."""

    def __init__(self, out: Path):
        from importlib.metadata import version

        from edgeai.runtime.onnx import OnnxBackend

        self.label = f"onnxruntime-genai {version('onnxruntime-genai')}"
        super().__init__(OnnxBackend(), "onnx", out, n_ctx=self.max_tokens)


def open_runner(out: Path) -> OnnxRunner:
    return OnnxRunner(out)
