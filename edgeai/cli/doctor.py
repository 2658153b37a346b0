"""`edgeai doctor`: what is installed, which backends load here and why others don't, the CPU,
GPU offload and memory. It may import heavy stacks (that is its job); nothing else does."""

from __future__ import annotations

import importlib
import importlib.util
import platform

import click

from edgeai import __version__

# extra -> the import names that show it is installed
EXTRAS = {
    "llamacpp": ("llama_cpp",), "hub": ("huggingface_hub",), "mlx": ("mlx", "mlx_lm"),
    "convert": ("gguf", "transformers", "onnx", "onnxruntime_genai", "coremltools"),
    "rag": ("tokenizers", "safetensors", "pypdf", "docx", "selectolax", "faiss"),
    "bench": ("numpy", "matplotlib"), "speech": ("faster_whisper", "whisper"), "tts": ("piper",),
    "vision": ("PIL", "rapidocr", "cv2"),
}


def extras_status() -> list[tuple[str, bool, str]]:
    rows = []
    for extra, modules in EXTRAS.items():
        missing = [m for m in modules if importlib.util.find_spec(m) is None]
        rows.append((extra, not missing, f"missing {', '.join(missing)}" if missing else ""))
    return rows


def mlx_blas_status() -> str | None:
    """Which BLAS mlx[cpu]'s float32 matmuls use (scripts/mlx_blas); None where that does not apply."""
    import os

    if platform.system() != "Linux" or importlib.util.find_spec("mlx") is None:
        return None
    try:  # the import hook the venv's .pth loads at start-up (stdlib only, cheap)
        import _edgeai_mlx_blas as hook
    except ImportError:
        return "reference BLAS, as mlx[cpu] ships it (scripts/setup installs the OpenBLAS shim: ~40x matmuls)"
    if not os.path.exists(hook.LIB):
        return f"reference BLAS (the shim's library is missing: {hook.LIB}; re-run scripts/setup)"
    if os.environ.get("EDGEAI_MLX_BLAS", "1") == "0":
        return "reference BLAS (EDGEAI_MLX_BLAS=0)"
    return f"OpenBLAS through edgeai's shim ({hook.LIB})"


def backend_status(name: str, target: str) -> str:
    module = target.partition(":")[0]
    try:
        importlib.import_module(module)
    except Exception as exc:  # any import failure is a reason to report, not to crash
        return f"unavailable: {type(exc).__name__}: {exc}"
    if name != "llamacpp":
        return "ok"
    from edgeai.runtime.llamacpp_build import (
        import_llama_cpp,
        needs_amx_guard,
        supports_gpu_offload,
        system_info,
    )

    try:
        llama_cpp = import_llama_cpp()
    except Exception as exc:
        return f"unavailable: {exc}"
    info = system_info(llama_cpp)
    gpu = "yes (all layers by default)" if supports_gpu_offload(llama_cpp) else "no (CPU build)"
    guard = "active (build has AMX)" if needs_amx_guard(info) else "not needed (no AMX kernels)"
    return (f"ok · llama-cpp-python {llama_cpp.__version__} · GPU offload: {gpu} · AMX guard: "
            f"{guard}\n{'':12}build: {info.strip()}")


@click.command()
@click.option("--tune", is_flag=True,
              help="Measure the best threads, batch size and backend here, and save them in the config.")
@click.option("--model", "-m", metavar="ID|PATH", help="Model to tune with (default: the configured one).")
def doctor(tune: bool, model: str | None) -> None:
    """Check this machine: extras, backends, CPU, GPU offload, memory, the default model."""
    if tune:
        from edgeai.cli.tune import run_tune

        run_tune(model)
        return
    from edgeai.config import load_settings
    from edgeai.models import find_entry, parse_id
    from edgeai.models.resolve import artifact_path, artifact_state
    from edgeai.runtime import all_backends
    from edgeai.system import cpu_info, memory_gb, os_name

    settings = load_settings()
    cpu = cpu_info()
    total, available = memory_gb()
    click.echo(f"edgeai {__version__} · Python {platform.python_version()} · {os_name()}")
    click.echo(f"{'cpu':<12}{cpu['model']} · {cpu['cores']} cores · {' '.join(cpu['features'])}")
    avail = f", {available:.1f} GB available" if available else ""
    click.echo(f"{'memory':<12}{total:.1f} GB total{avail}" if total else f"{'memory':<12}unknown")
    click.echo(f"{'data dir':<12}{settings.home}")
    click.echo("extras")
    for extra, ok, why in extras_status():
        click.echo(f"  {extra:<10}{'ok' if ok else 'no'}{'  (' + why + ')' if why else ''}")
    click.echo("backends")
    for name, target in sorted(all_backends().items()):
        click.echo(f"  {name:<10}{backend_status(name, target)}")
    blas = mlx_blas_status()
    if blas:
        click.echo(f"{'mlx blas':<12}{blas}")
    name, quant, fmt = parse_id(settings.model)
    try:
        entry = find_entry(name)
        art = entry.artifact(quant, fmt)
        state = f"{artifact_state(entry, art, settings)} ({artifact_path(entry, art, settings)})"
    except Exception as exc:
        state = f"not resolvable: {exc}"
    click.echo(f"{'model':<12}{settings.model}: {state}")
    _installed(settings)


def _installed(settings) -> None:
    """The model's optimized exports and what `doctor --tune` chose among them."""
    from edgeai.models import find_entry, parse_id
    from edgeai.models.installed import exports
    from edgeai.tuned import model_tuning

    try:
        made = exports(find_entry(parse_id(settings.model)[0]), settings)
    except Exception:
        return
    for item in made:
        ratio = f"ppl ×{item.ratio:.3f}" if item.ratio else "not checked"
        click.echo(f"{'':<12}optimized {item.label} ({ratio}) {item.path}")
    tuning = model_tuning(settings.home, settings.model)
    if tuning and tuning.format:
        click.echo(f"{'tuned':<12}run/serve/bench: {tuning.format} ({tuning.path}); "
                   f"chat: {tuning.chat_format or 'the catalog artifact'}")
    elif made:
        click.echo(f"{'tuned':<12}not yet: `edgeai doctor --tune` measures the installed formats")
