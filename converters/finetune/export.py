"""A finished fine-tune run (OUT) -> a fused Hugging Face folder -> every export format.

Boundary: this module reads OUT (manifest.json, adapter_config.json, adapters.safetensors) and
writes only under `OUT/exports/` (or the folder `fuse` / `write_adapter_gguf` is given). It
trains nothing and converts nothing itself:

- `fuse` applies mlx-lm's own pieces (`load(..., adapter_path=)`, each LoRA/DoRA layer's
  `fuse(dequantize=True)`, `dequantize_model`) and writes the result as a plain HF folder
  (safetensors in the base's float dtype, config.json without a quantization block, the base's
  tokenizer, chat template and license files), which transformers and `edgeai.converters` read
  like any checkpoint;
- `export_run` fuses once, hands the folder to `edgeai.converters.convert` per target (each with
  its fidelity card against the fused model), then compares each export with the ORIGINAL base
  through `converters.validate.validate` (report.json's `vs_base`): what tuning changed, apart
  from quantization. All exports appear together or none does;
- `write_adapter_gguf` writes llama.cpp's LoRA adapter GGUF (`--lora`, Ollama's `ADAPTER`).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, replace
from pathlib import Path

from edgeai.converters.manifest import Manifest
from edgeai.converters.progress import Progress
from edgeai.errors import BadInput
from edgeai.formats import CONVERT_TARGETS, FORMATS

RUN_MANIFEST = "manifest.json"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapters.safetensors"
EXPORTS = "exports"
ADAPTER_GGUF = "adapter-gguf"  # exports/<this>/: the adapter-only GGUF and its Ollama Modelfile
# config.json dtype names -> safetensors dtypes (what the fused weights are written in)
SAFETENSORS_DTYPES = {"float32": "F32", "bfloat16": "BF16", "float16": "F16"}
# the fields of a fidelity card that compare two models (report.json's `vs_base` keeps these)
COMPARISON = ("reference", "runner", "numbers_checked", "why_not_checked", "positions", "top1_agreement",
              "first_divergence", "max_abs_logit_delta", "perplexity", "perplexity_reference",
              "perplexity_ratio", "perplexity_tokens", "greedy_equal", "greedy_first_divergence",
              "tokenizer_ids_match", "validate_seconds")


# -- the run folder ---------------------------------------------------------------------------
def run_manifest(run: Path) -> dict:
    """OUT's manifest.json, checked to name the MLX base it was trained on."""
    run = Path(run)
    path = run / RUN_MANIFEST
    if not path.is_file():
        partial = run.with_name(run.name + ".partial")
        hint = (f"{partial} holds an unfinished run: continue it with --resume" if partial.is_dir()
                else "pass the OUT folder of a finished `edgeai finetune`")
        raise BadInput(f"{run} is not a finished fine-tune run (no {RUN_MANIFEST})", hint)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        mlx_path = data["base"]["mlx_path"]
    except (ValueError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise BadInput(f"{path} is damaged ({type(exc).__name__}: {exc})") from None
    if not isinstance(mlx_path, str) or not mlx_path:
        raise BadInput(f"{path} names no MLX base (base.mlx_path)")
    for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
        if not (run / name).is_file():
            raise BadInput(f"{run} lacks {name}", "pass the OUT folder of a finished `edgeai finetune`")
    return data


def adapter_config(run: Path) -> dict:
    """OUT's adapter_config.json (mlx-lm's layout)."""
    path = Path(run) / ADAPTER_CONFIG
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput(f"{run} lacks {ADAPTER_CONFIG}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path} is damaged: {exc}") from None
    if not isinstance(data, dict):
        raise BadInput(f"{path} is damaged: not a JSON object")
    return data


def base_mlx(run: Path, info: dict | None = None) -> Path:
    """The MLX base folder the run was trained on (what its adapter applies to)."""
    info = info or run_manifest(run)
    path = Path(info["base"]["mlx_path"]).expanduser()
    if not (path / "config.json").is_file():
        raise BadInput(f"the MLX base {path} that {Path(run).name} was trained on is gone",
                       "tune again, or restore that folder (a QLoRA base is cached under "
                       "<home>/cache/finetune-bases/)")
    return path


def _family(config: dict) -> str:
    from edgeai.converters.source import HF_FAMILIES, unsupported

    model_type = config.get("model_type", "")
    if model_type not in HF_FAMILIES:
        raise unsupported(model_type or "(no model_type)")
    return HF_FAMILIES[model_type]


def _read_config(folder: Path) -> dict:
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise BadInput(f"{folder}/config.json cannot be read: {exc}") from None


# -- --export ---------------------------------------------------------------------------------
def parse_exports(spec: str) -> list[tuple[str, str | None]]:
    """`--export gguf:Q4_K_M,onnx:int4,coreml:int8,mlx:4bit` -> [(format, quant)], checked
    against the format table (edgeai/formats.py); a bare format takes its default quant (None).
    A quant is matched without regard to case and given back in the table's spelling."""
    targets: list[tuple[str, str | None]] = []
    items = [item.strip() for item in (spec or "").split(",")]
    if not any(items):
        raise BadInput("--export is empty", "e.g. --export gguf:Q4_K_M,onnx:int4")
    for item in items:
        if not item:
            raise BadInput(f"--export {spec!r} has an empty item", "separate FORMAT:QUANT pairs with commas")
        fmt, sep, quant = (part.strip() for part in item.partition(":"))
        fmt = fmt.lower()
        if fmt not in CONVERT_TARGETS:
            raise BadInput(f"--export: unknown format {fmt!r} in {item!r}",
                           f"formats: {', '.join(CONVERT_TARGETS)}")
        if any(fmt == done for done, _ in targets):
            raise BadInput(f"--export names {fmt} twice", f"one quant per format (OUT/{EXPORTS}/{fmt}/)")
        names = FORMATS[fmt].quants
        if sep and not quant:
            raise BadInput(f"--export: {item!r} has no quant after the colon",
                           f"{fmt} takes: {' '.join(names)}")
        if not sep:
            targets.append((fmt, None))
            continue
        spelled = {name.lower(): name for name in names}.get(quant.lower())
        if spelled is None:
            raise BadInput(f"--export: {fmt} has no quant {quant!r}", f"{fmt} takes: {' '.join(names)}")
        targets.append((fmt, spelled))
    return targets


# -- fuse -------------------------------------------------------------------------------------
def fuse(run: Path, dest: Path, *, progress: Progress | None = None) -> Path:
    """The run's adapter fused into its base, saved as a dequantized HF folder at `dest` (a new
    folder, written whole or not at all); returns `dest`."""
    from edgeai.converters.hf import KEEP, copy_notices
    from edgeai.converters.mlx import require_mlx
    from edgeai.converters.safetensors_io import write_streaming
    from edgeai.converters.staging import staged_output
    from edgeai.fileio import atomic_write

    progress = progress or Progress()
    run, dest = Path(run), Path(dest)
    info = run_manifest(run)
    base = base_mlx(run, info)
    config = _read_config(base)
    _family(config)  # a clear refusal before anything loads
    require_mlx()
    with staged_output(dest) as stage:
        progress.start("fusing the adapter into its base (mlx-lm)", 2)
        weights = _fused_weights(run, base, config)
        progress.advance()
        dtype = _float_dtype(config, weights)
        shapes = {name: tuple(weights[name].shape) for name in sorted(weights)}
        progress.advance()
        progress.start(f"writing the fused model.safetensors ({dtype})", len(shapes))

        def produce(name: str):
            import mlx.core as mx
            import numpy as np

            return np.array(weights.pop(name).astype(mx.float32))  # popped: memory falls as it writes

        write_streaming(stage / "model.safetensors", shapes, dtype, produce, {"format": "pt"},
                        lambda _: progress.advance())
        for key in ("quantization", "quantization_config"):
            config.pop(key, None)
        config["torch_dtype"] = config["dtype"] = next(k for k, v in SAFETENSORS_DTYPES.items() if v == dtype)
        atomic_write(stage / "config.json", json.dumps(config, indent=2, sort_keys=True) + "\n")
        for name in KEEP:
            if (base / name).is_file():
                shutil.copy2(base / name, stage / name)
        copy_notices(base, stage)
    return dest


def _fused_weights(run: Path, base: Path, config: dict) -> dict:
    """name -> mx.array of the base with every adapter layer fused in and nothing quantized,
    computed in the original checkpoint's float dtype: mlx-lm fuses in the dtype of the layer's
    weights, which for a 4-bit base is its scales' fp16, a rounding the export need not carry."""
    import mlx.core as mx
    import mlx_lm
    from mlx.utils import tree_flatten, tree_unflatten
    from mlx_lm.utils import dequantize_model

    try:
        model, _ = mlx_lm.load(str(base), adapter_path=str(run))
    except (ValueError, KeyError, FileNotFoundError, OSError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise BadInput(f"mlx-lm could not apply the adapter in {run} to {base}: {first}") from None
    named = config.get("torch_dtype") or config.get("dtype")
    if named in SAFETENSORS_DTYPES:
        model.set_dtype(getattr(mx, named))  # float parameters only: packed 4-bit weights stay as they are
    fused = [(name, module.fuse(dequantize=True)) for name, module in model.named_modules()
             if hasattr(module, "fuse")]  # mlx-lm's adapter layers (LoRA, DoRA, their switch variants)
    if fused:
        model.update_modules(tree_unflatten(fused))
    model = dequantize_model(model)  # the layers the adapter left alone (QLoRA: all of the rest)
    return dict(tree_flatten(model.parameters()))


def _float_dtype(config: dict, weights: dict) -> str:
    """The base's own float dtype: config.json's (mlx-lm keeps the original checkpoint's there,
    also when it quantized), else that of the weights."""
    named = config.get("torch_dtype") or config.get("dtype")
    if named in SAFETENSORS_DTYPES:
        return SAFETENSORS_DTYPES[named]
    found = {str(array.dtype).rsplit(".", 1)[-1] for array in weights.values()}
    return next((SAFETENSORS_DTYPES[n] for n in SAFETENSORS_DTYPES if n in found), "F32")


# -- export_run -------------------------------------------------------------------------------
def export_run(run: Path, targets, *, progress: Progress | None = None, settings=None,
               force: bool = False) -> list[tuple[Path, Manifest]]:
    """Fuse OUT once, export it to each (format, quant) of `targets` (a list, or an --export
    string) under OUT/exports/<format>/, each card also compared with the original base; the
    adapter-only GGUF into OUT/exports/adapter-gguf/ where the base has a GGUF and the method
    has that format. All of it appears or none does. Returns [(folder, Manifest)] per target."""
    from edgeai.converters import choose_quant, convert, target
    from edgeai.converters.staging import staged_output

    progress = progress or Progress()
    run = Path(run).expanduser().resolve()
    targets = parse_exports(targets) if isinstance(targets, str) else list(targets)
    info = run_manifest(run)
    family = _family(_read_config(base_mlx(run, info)))
    chosen = [(fmt, choose_quant(target(fmt), fmt, family, quant)) for fmt, quant in targets]  # before work
    reference = _base_source(info, settings)
    base_gguf = _base_gguf(info)
    method = adapter_config(run).get("fine_tune_type", "lora")
    made = []
    with staged_output(run / EXPORTS, force) as stage:
        # inside the stage: a failed or killed export takes the fused copy with it
        scratch = stage / ".fused"
        fused = fuse(run, scratch / run.name, progress=progress)  # named as the run, so the artifacts are
        for fmt, quant in chosen:
            out = stage / fmt
            manifest = convert(fused, out, to=fmt, quant=quant, progress=progress, settings=settings)
            manifest = _record_origin(out, manifest, run, info)
            _against_base(reference, out, manifest, progress)
            made.append((run / EXPORTS / fmt, manifest))
        if base_gguf is not None and method == "lora":
            write_adapter_gguf(run, stage / ADAPTER_GGUF, base_gguf)
        shutil.rmtree(scratch)
    return made


def _record_origin(out: Path, manifest: Manifest, run: Path, info: dict) -> Manifest:
    """The export's manifest names the run, not the temporary fused folder it was made from."""
    from edgeai.converters.manifest import MANIFEST, write_json

    base = info.get("base") or {}
    note = (f"the fused model of the fine-tune run {run} ({info.get('method', 'lora')} on "
            f"{base.get('source') or base.get('mlx_path')})")
    manifest = replace(manifest, source=str(run), notes=(*manifest.notes, note))
    write_json(out / MANIFEST, manifest)
    return manifest


def _base_source(info: dict, settings=None):
    """The original base as a converters Source (its HF folder, else its GGUF), or None."""
    from edgeai.converters.source import open_source

    base = info.get("base") or {}
    for key in ("hf_path", "gguf_path"):
        path = base.get(key)
        if path and Path(path).expanduser().exists():
            return open_source(Path(path).expanduser(), settings)
    return None


def _base_gguf(info: dict) -> Path | None:
    path = (info.get("base") or {}).get("gguf_path")
    return Path(path).expanduser() if path and Path(path).expanduser().is_file() else None


def _against_base(reference, out: Path, manifest: Manifest, progress: Progress) -> None:
    """report.json's `vs_base`: the export compared with the original base, by the same card."""
    from edgeai.converters.manifest import REPORT, write_json
    from edgeai.converters.validate import validate

    card = json.loads((out / REPORT).read_text(encoding="utf-8"))
    if not card.get("numbers_checked"):  # the export cannot run here (Core ML off macOS): no numbers
        vs_base = {"numbers_checked": False, "why_not_checked": card.get("why_not_checked")}
    elif reference is None:
        vs_base = {"numbers_checked": False,
                   "why_not_checked": "the run's manifest names no HF folder or GGUF of the base"}
    else:
        report = asdict(validate(reference, out, progress=progress, manifest=manifest))
        vs_base = {"source": str(reference.path), **{k: report[k] for k in COMPARISON}}
    card["vs_base"] = vs_base
    write_json(out / REPORT, card)


# -- the adapter-only GGUF --------------------------------------------------------------------
def write_adapter_gguf(run: Path, dest: Path, base_gguf: Path) -> Path:
    """llama.cpp's LoRA adapter GGUF of the run, for `base_gguf`, in the new folder `dest`
    (with an Ollama Modelfile: `FROM` the base, `ADAPTER` this file). Returns the GGUF's path.

    mlx-lm computes y = W x + scale * (x @ lora_a) @ lora_b with lora_a (in, r), lora_b (r, out);
    llama.cpp adds (alpha / r) * B (A x) with A (r, in) and B (out, r) as numpy shapes (ne
    [in, r] and [r, out]). So A = lora_a.T, B = lora_b.T, alpha = scale * r; B's rows follow
    the base tensor's own layout (Llama's Q/K row permutation, converters/tensors.py)."""
    import gguf
    import numpy as np

    from edgeai.converters.safetensors_io import iter_tensors
    from edgeai.converters.staging import staged_output
    from edgeai.converters.tensors import GGUF_ARCH, name_map, to_gguf
    from edgeai.gguf_info import read_header

    run, base_gguf = Path(run), Path(base_gguf).expanduser()
    info = run_manifest(run)
    config = adapter_config(run)
    method = config.get("fine_tune_type", "lora")
    if method == "dora":
        raise BadInput("a DoRA adapter has no llama.cpp adapter format (llama.cpp applies plain LoRA only)",
                       "export the fused model instead: --export gguf:Q4_K_M")
    if method != "lora":
        raise BadInput(f"a {method} fine-tune has no adapter to write",
                       "export the model instead: --export gguf:Q4_K_M")
    params = config.get("lora_parameters") or {}
    try:
        rank, scale = int(params["rank"]), float(params["scale"])
    except (KeyError, TypeError, ValueError):
        raise BadInput(f"{run / ADAPTER_CONFIG} has no lora_parameters rank and scale") from None
    family = _family(_read_config(base_mlx(run, info)))
    header = read_header(base_gguf)
    arch = header.architecture
    if arch != family:
        raise BadInput(f"{base_gguf.name} is a {arch or 'unknown'} model; the adapter is for {family}",
                       "pass the GGUF of the base the run was trained on")
    table = {t.name: t.dims for t in header.tensors}
    n_head = int(header.get(f"{arch}.attention.head_count"))
    n_head_kv = int(header.get(f"{arch}.attention.head_count_kv", n_head))
    n_layers = int(header.get(f"{arch}.block_count"))
    arrays = dict(iter_tensors([run / ADAPTER_WEIGHTS]))
    prefixes = sorted({name.rsplit(".", 1)[0] for name in arrays})
    mapping = name_map(family, n_layers, [f"{p}.weight" for p in prefixes])
    pairs = []
    for prefix in prefixes:
        hf_name = f"{prefix}.weight"
        lora_a, lora_b = arrays.get(f"{prefix}.lora_a"), arrays.get(f"{prefix}.lora_b")
        target = mapping.get(hf_name)
        if lora_a is None or lora_b is None or target is None or target == "token_embd.weight":
            raise BadInput(f"the adapter tensor {prefix} has no llama.cpp LoRA counterpart",
                           "llama.cpp adapters cover the linear layers of the blocks; export the fused model")
        if target not in table:
            raise BadInput(f"{base_gguf.name} has no tensor {target}", "pass the GGUF of the run's base")
        a = np.ascontiguousarray(lora_a.T, dtype=np.float32)  # (r, in)
        b = np.ascontiguousarray(to_gguf(family, target, lora_b.T, n_head, n_head_kv), dtype=np.float32)
        if table[target][:2] != (a.shape[1], b.shape[0]):
            raise BadInput(f"the adapter's {target} is {b.shape[0]}x{a.shape[1]}, the base GGUF's is "
                           f"{table[target][1]}x{table[target][0]}", "pass the GGUF of the run's base")
        pairs.append((target, a, b))
    name = f"{run.name}-lora.gguf"
    with staged_output(Path(dest)) as stage:
        writer = gguf.GGUFWriter(str(stage / name), gguf.MODEL_ARCH_NAMES[getattr(gguf.MODEL_ARCH,
                                                                                  GGUF_ARCH[family])])
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, scale * rank)
        writer.add_name(f"{run.name} (LoRA r{rank})")
        for target, a, b in pairs:
            writer.add_tensor(f"{target}.lora_a", a)
            writer.add_tensor(f"{target}.lora_b", b)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        (stage / "Modelfile").write_text(f"FROM {base_gguf.resolve()}\nADAPTER ./{name}\n", encoding="utf-8")
    return Path(dest) / name
