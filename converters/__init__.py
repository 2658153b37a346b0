"""Model export: `convert(src, out, to=..., quant=...) -> Manifest`, one module per target.

Targets are modules, imported only when chosen (`edgeai --help` must not wait on torch):

    hf      GGUF -> Hugging Face import (dequantized safetensors), or an HF re-save in a dtype
    gguf    HF -> GGUF with the `gguf` package's tensor maps; K-quants by llama.cpp's quantizer
    mlx     mlx-lm's convert
    onnx    onnxruntime-genai's model builder (decoder with KV cache)
    coreml  coremltools through torch.export (runs on macOS only; spec-checked elsewhere)

Each target module provides:

    QUANTS: tuple[str, ...]            accepted --quant names (its row in edgeai/formats.py)
    NOT_FOR_GEMMA: tuple[str, ...]     names refused for Gemma (fp16 overflows in the family)
    default_quant(family) -> str
    export(source, stage, quant, *, progress, notes, settings) -> list[str]   artifact names
    open_runner(out) -> Runner         the export loaded for validation (converters/runners.py)
    toolchain() -> dict[str, str]      tool versions for the manifest
    runs_here() -> str | None          optional: why the export cannot run on this machine
    check_spec(out) -> dict            optional: static checks when it cannot run

`convert` writes into a temporary sibling of OUT (converters/staging.py), validates the export
there, and only then renames it into place: OUT holds the artifacts, manifest.json and
report.json, or does not exist.
"""

from __future__ import annotations

import importlib
import resource
import sys
import time
from pathlib import Path
from types import ModuleType

from edgeai.converters.manifest import MANIFEST, REPORT, Manifest, folder_size, write_json
from edgeai.converters.progress import Progress
from edgeai.converters.source import Source, open_source
from edgeai.errors import BadInput, EdgeAIError
from edgeai.formats import CONVERT_TARGETS

TARGETS = CONVERT_TARGETS  # edgeai/formats.py: one row per format


def target(name: str) -> ModuleType:
    if name not in TARGETS:
        raise BadInput(f"unknown target format {name!r}", f"choose one of: {', '.join(TARGETS)}, all")
    return importlib.import_module(f"edgeai.converters.{name}")


def choose_quant(module: ModuleType, to: str, family: str, quant: str | None) -> str:
    if quant is None:
        return module.default_quant(family)
    if quant not in module.QUANTS:
        raise BadInput(f"unknown --quant {quant!r} for {to}", f"{to} takes: {' '.join(module.QUANTS)}")
    if family == "gemma3" and quant in module.NOT_FOR_GEMMA:
        raise BadInput(f"Gemma models overflow in {quant}", "use bf16 or fp32 for Gemma (see --help)")
    return quant


def _peak_rss_mb() -> float | None:
    from edgeai.memory import peak_rss_mb

    own = peak_rss_mb() or 0.0
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # tool subprocesses
    children /= 2**20 if sys.platform == "darwin" else 1024  # bytes on macOS, kB on Linux
    return round(max(own, children), 1) or None


def _toolchain_error(what: str, exc: Exception) -> EdgeAIError:
    first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    return EdgeAIError(f"{what} failed: {type(exc).__name__}: {first}",
                       "run again with --debug for the traceback")


def prepare(src: str | Path | Source, out: str | Path, *, to: str, quant: str | None = None,
            force: bool = False, settings=None) -> tuple[Source, ModuleType, str]:
    """Every check that needs no heavy work (source, target, quant, OUT), before any starts."""
    from edgeai.converters.staging import check_output

    source = src if isinstance(src, Source) else open_source(src, settings)
    module = target(to)
    quant = choose_quant(module, to, source.family, quant)
    out, src_path = Path(out).expanduser().resolve(), source.path.resolve()
    if out == src_path or out in src_path.parents:
        raise BadInput(f"OUT {out} is the source or holds it", "write the export somewhere else")
    check_output(out, force)
    return source, module, quant


def convert(src: str | Path, out: str | Path, *, to: str, quant: str | None = None, force: bool = False,
            check: bool = True, progress: Progress | None = None, settings=None) -> Manifest:
    """Export SRC (HF folder, .gguf, catalog id) to OUT in format `to`; validate unless check=False."""
    from edgeai import __version__
    from edgeai.converters.staging import staged_output

    progress = progress or Progress()
    source, module, quant = prepare(src, out, to=to, quant=quant, force=force, settings=settings)
    notes: list[str] = []
    with staged_output(Path(out), force) as stage:
        start = time.perf_counter()
        try:
            artifacts = module.export(source, stage, quant, progress=progress, notes=notes, settings=settings)
        except (EdgeAIError, KeyboardInterrupt, MemoryError):
            raise
        except Exception as exc:  # a toolchain's own failure: one line, the traceback under --debug
            raise _toolchain_error(f"{to} export", exc) from exc
        manifest = Manifest(
            format=to, quant=quant, family=source.family, source=str(source.path), source_kind=source.kind,
            artifacts=tuple(artifacts), toolchain=module.toolchain(),
            seconds=round(time.perf_counter() - start, 2),
            peak_rss_mb=_peak_rss_mb(), size_bytes=sum(folder_size(stage / a) for a in artifacts),
            notes=tuple(notes), edgeai=__version__)
        write_json(stage / MANIFEST, manifest)
        if check:
            from edgeai.converters.validate import validate

            try:
                report = validate(source, stage, progress=progress, manifest=manifest)
            except (EdgeAIError, KeyboardInterrupt, MemoryError):
                raise
            except Exception as exc:  # the export does not load or run: nothing goes to OUT
                raise _toolchain_error(f"{to} validation", exc) from exc
            write_json(stage / REPORT, report)
    return manifest


def convert_all(src: str | Path, out: str | Path, *, force: bool = False, check: bool = True,
                progress: Progress | None = None, settings=None) -> list[tuple[Path, Manifest]]:
    """Every target at its default quantization, into OUT/<format>/; all of them or nothing."""
    from edgeai.converters.staging import staged_output

    source = src if isinstance(src, Source) else open_source(src, settings)
    made = []
    with staged_output(Path(out), force) as stage:
        for name in TARGETS:
            made.append((name, convert(source, stage / name, to=name, check=check, progress=progress,
                                       settings=settings)))
    return [(Path(out) / name, manifest) for name, manifest in made]


__all__ = ["TARGETS", "MANIFEST", "REPORT", "Manifest", "Source", "convert", "convert_all", "open_source",
           "target"]
