"""The one table of model formats: what runs each, what `edgeai convert` makes, and how to
recognise it on disk.

Every part that names a format reads it from here: the runtime (format -> backend), the
converters (targets and their --quant names), the CLI's help, the resolver (what a folder
holds) and the bench (which runtimes an export needs, which package version to record). A new
format is one row here plus its modules (`edgeai/runtime/<backend>.py`, `converters/<name>.py`).
Data only: importing this pulls nothing heavy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Format:
    name: str
    backend: str | None = None  # the runtime backend that runs it by default (None: none here)
    quants: tuple[str, ...] = ()  # `edgeai convert --to NAME --quant Q` names; () = not a target
    not_for_gemma: tuple[str, ...] = ()  # quants refused for Gemma (the family overflows in fp16)
    folder: bool = False  # the artifact is a folder `edgeai convert` writes (else one file)
    marker: str | None = None  # a file that marks such a folder when it has no edgeai manifest
    dist: str | None = None  # the package whose version a benchmark records for the backend

    @property
    def convert_target(self) -> bool:
        return bool(self.quants)


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("hf", quants=("fp32", "bf16", "fp16"), not_for_gemma=("fp16",), folder=True),
    Format("gguf", backend="llamacpp", quants=("F16", "F32", "BF16", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M",
                                     "Q4_0", "IQ4_NL"),
           not_for_gemma=("F16",), dist="llama_cpp_python"),
    Format("mlx", backend="mlx", quants=("fp32", "bf16", "fp16", "8bit", "4bit"), not_for_gemma=("fp16",),
           folder=True, dist="mlx_lm"),
    Format("onnx", backend="onnx", quants=("fp32", "fp16", "int8", "int4", "int4-kquant",
                                                        "int4-klast", "int4-kquant-h4"),
           not_for_gemma=("fp16",), folder=True, marker="genai_config.json", dist="onnxruntime_genai"),
    Format("coreml", backend="coreml", quants=("fp16", "int8", "palette4", "int4-block"), folder=True,
           dist="coremltools"),
    Format("echo", backend="echo"),
    # Whisper in CTranslate2's layout (model.bin + its companions): run by edgeai.speech, not an LLM backend
    Format("ct2", dist="ctranslate2"),
)}

# artifact format -> the backend that runs it by default
FORMAT_BACKENDS: dict[str, str] = {f.name: f.backend for f in FORMATS.values() if f.backend}

# `edgeai convert --to` names, in the order the help lists them
CONVERT_TARGETS: tuple[str, ...] = tuple(f.name for f in FORMATS.values() if f.convert_target)

# runtimes that run a folder `edgeai convert` exported (a GGUF model has no artifact for them)
EXPORT_BACKENDS: tuple[str, ...] = tuple(f.backend for f in FORMATS.values() if f.folder and f.backend)


def quant_help() -> str:
    """The --quant help line: every target's names."""
    targets = " · ".join(f"{name}: {' '.join(FORMATS[name].quants)}" for name in CONVERT_TARGETS)
    return f"{targets} (default: the 16-bit/fp32 form; Gemma never fp16)"


def backend_dist(backend: str) -> str | None:
    """The package whose version stands for `backend` in a benchmark's records."""
    return next((f.dist for f in FORMATS.values() if f.backend == backend and f.dist), None)


def folder_format(folder: Path) -> str | None:
    """The format a folder without an edgeai manifest holds, from its marker file."""
    return next((f.name for f in FORMATS.values() if f.marker and (folder / f.marker).is_file()), None)
