"""BASE -> the MLX model a run trains on, and the files the rest of the run needs from it.

BASE is a catalog id, a Hugging Face folder, a GGUF file (both imported to HF through the
converters' cached `hf_folder`), or an MLX folder. mlx-lm loads an unquantized HF folder as it
is, so LoRA, DoRA and full tuning train on it directly; QLoRA needs a 4-bit MLX base, which is
made once through the MLX converter (its mixed 4/6-bit recipe) into
`<home>/cache/finetune-bases/` and reused. An MLX folder that is already quantized is trained
as QLoRA whatever `--method` says; it has no unquantized original, so fusing de-quantizes it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from edgeai.errors import BadInput


@dataclass(frozen=True)
class Base:
    source: str  # as the user gave it
    kind: str  # catalog | hf | gguf | mlx
    mlx_path: str  # the folder mlx_lm.load reads
    hf_path: str | None  # the unquantized HF folder (fusing, the against-base line)
    gguf_path: str | None  # the base as a GGUF (for the adapter-only GGUF), where there is one
    quantized: str | None  # "4bit" when trained as QLoRA
    sha256: str = ""  # of the MLX base's weights, filled once it is made

    def to_json(self) -> dict:
        return asdict(self)


def quantization(folder: Path) -> dict | None:
    """The `quantization` block of an MLX folder's config (None: not quantized)."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return config.get("quantization") or config.get("quantization_config")


def locate(src: str, settings) -> tuple[Base, str | None]:
    """Where BASE's files are, without loading or converting anything heavy (a GGUF's HF import
    is cached and happens at most once). Returns the base (mlx_path not made yet for QLoRA) and
    a note when the method is changed."""
    path = Path(src).expanduser()
    if path.is_dir() and quantization(path):
        return Base(source=src, kind="mlx", mlx_path=str(path.resolve()), hf_path=None, gguf_path=None,
                    quantized="4bit"), "the base is already quantized: training QLoRA on it"
    from edgeai.converters.source import hf_folder, open_source

    source = open_source(src, settings)
    hf = hf_folder(source, settings)
    kind = "hf" if source.kind == "hf" else ("gguf" if path.is_file() else "catalog")
    gguf = str(source.path.resolve()) if source.kind == "gguf" else None
    return Base(source=src, kind=kind, mlx_path=str(Path(hf).resolve()), hf_path=str(Path(hf).resolve()),
                gguf_path=gguf, quantized=None), None


def prepare(base: Base, method: str, settings, progress) -> Base:
    """The base ready to train: for QLoRA a 4-bit MLX folder (made once, cached)."""
    if method != "qlora" or base.quantized:
        return _stamped(base)
    from edgeai import converters
    from edgeai.converters.source import import_key

    hf = Path(base.hf_path)
    weights = sorted(hf.glob("*.safetensors"))
    key = import_key(weights[0] if weights else hf / "config.json")
    cached = settings.home / "cache" / "finetune-bases" / f"{hf.name}-{key}-4bit"
    if not (cached / "config.json").is_file():
        cached.parent.mkdir(parents=True, exist_ok=True)
        # no fidelity card: an intermediate, and MLX validation takes minutes on a CPU
        converters.convert(hf, cached, to="mlx", quant="4bit", check=False, force=True,
                           progress=progress, settings=settings)
    return _stamped(Base(**{**base.to_json(), "mlx_path": str(cached), "quantized": "4bit"}))


def _stamped(base: Base) -> Base:
    """The base with the hash of the weights it trains on (the manifest's identity of BASE)."""
    import hashlib

    from edgeai.fileio import sha256_file

    folder = Path(base.mlx_path)
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        raise BadInput(f"{folder} holds no .safetensors weights", "BASE must be a model folder MLX can load")
    if len(weights) == 1:
        return Base(**{**base.to_json(), "sha256": sha256_file(weights[0])})
    joined = "".join(f"{p.name}:{sha256_file(p)}\n" for p in weights)  # a sharded base: the shards' hashes
    return Base(**{**base.to_json(), "sha256": hashlib.sha256(joined.encode()).hexdigest()})


def dense_float32(model):
    """A quantized MLX model made dense in float32, for a CPU: MLX's quantized CPU matmuls crawl
    (~4.5x slower per training step than these weights on the BLAS; runtime/mlx.py makes the same
    trade for inference), and float32 is the precision the BLAS shim accelerates (sgemm)."""
    import mlx.core as mx
    from mlx_lm.utils import dequantize_model

    model = dequantize_model(model)
    model.set_dtype(mx.float32)
    return model
