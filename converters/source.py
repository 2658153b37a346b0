"""What a conversion starts from: a Hugging Face folder, a GGUF file, or a catalog id.

`open_source` checks everything a converter would otherwise trip over deep inside a toolchain
(config, architecture, tokenizer, safetensors headers) and says what is wrong in one line.
`hf_folder` gives every target an HF folder to read: a GGUF source is imported once into a
cache (`<home>/cache/imports/`) keyed by the file's identity, so repeated exports reuse it.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

from edgeai.errors import BadInput, ModelFormatError

# Hugging Face model_type -> our family name; GGUF general.architecture uses the family name.
HF_FAMILIES = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "gemma3_text": "gemma3"}
FAMILIES = ("llama", "qwen2", "qwen3", "gemma3")
SUPPORTED = "Llama (llama), Qwen2/Qwen2.5 (qwen2), Qwen3 (qwen3), Gemma 3 text (gemma3_text)"


@dataclass(frozen=True)
class Source:
    kind: str  # "hf" (a folder) or "gguf" (a file)
    path: Path
    family: str  # one of FAMILIES
    name: str  # a file-name stem for the artifacts
    config: dict = field(default_factory=dict, compare=False)  # config.json (hf sources)

    @property
    def label(self) -> str:
        return f"{self.path} ({self.kind}, {self.family})"


def unsupported(arch: str) -> BadInput:
    return BadInput(f"unsupported architecture {arch!r}", f"edgeai converts {SUPPORTED}")


def open_source(src: str | Path, settings=None) -> Source:
    """A checked Source for a folder, a .gguf file or a catalog id."""
    path = Path(src).expanduser()
    if path.is_dir():
        return open_hf_folder(path)
    if path.is_file():
        return open_gguf(path)
    if isinstance(src, str) and "/" not in src and not src.endswith(".gguf"):
        return _open_catalog(src, settings)
    raise BadInput(f"{src} does not exist",
                   "SRC is a Hugging Face model folder, a .gguf file or a catalog id")


def _open_catalog(model_id: str, settings) -> Source:
    from edgeai.config import load_settings
    from edgeai.errors import ModelNotFound
    from edgeai.models import resolve

    try:
        spec = resolve(model_id, settings or load_settings())
    except ModelNotFound as exc:
        raise BadInput(f"{model_id} is neither a file, a folder nor a catalog model",
                       "SRC is a Hugging Face folder, a .gguf file, or an id from `edgeai models list`",
                       ) from exc
    gguf = spec.artifact("gguf")
    if gguf is None:
        raise BadInput(f"catalog model {model_id} has no GGUF file to convert from")
    return open_gguf(Path(gguf))


def open_gguf(path: Path) -> Source:
    from edgeai.gguf_info import read_header

    header = read_header(path)  # a clear error for a non-GGUF or truncated file
    arch = header.architecture
    if arch not in FAMILIES:
        raise unsupported(arch)
    return Source("gguf", path.absolute(), arch, path.stem)


def open_hf_folder(path: Path) -> Source:
    config_file = path / "config.json"
    if not config_file.is_file():
        raise BadInput(f"{path} has no config.json", "SRC must be a Hugging Face model folder")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadInput(f"{config_file} is not valid JSON: {exc}") from None
    model_type = config.get("model_type", "") if isinstance(config, dict) else ""
    if model_type not in HF_FAMILIES:
        raise unsupported(model_type or "(no model_type in config.json)")
    if not any((path / name).is_file() for name in ("tokenizer.json", "tokenizer.model")):
        raise BadInput(f"{path} has no tokenizer (tokenizer.json or tokenizer.model)",
                       "copy the tokenizer files from the original model into the folder")
    for weights in weight_files(path):
        check_safetensors(weights)
    return Source("hf", path.absolute(), HF_FAMILIES[model_type], path.name, config)


def weight_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():  # a sharded checkpoint: exactly the shards its index names
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BadInput(f"{index} is damaged: {exc}") from None
        missing = [name for name in shards if not (folder / name).is_file()]
        if missing:
            raise BadInput(f"{folder} lacks the shard {missing[0]} its index names")
        return [folder / name for name in shards]
    files = sorted(folder.glob("model*.safetensors")) or sorted(folder.glob("*.safetensors"))
    if not files:
        if any(folder.glob("*.bin")) or any(folder.glob("*.pt")):
            raise BadInput(f"{folder} holds PyTorch pickles, not safetensors",
                           "edgeai reads safetensors only (pickles can run code); re-save with "
                           "save_pretrained(safe_serialization=True)")
        raise BadInput(f"{folder} has no *.safetensors weights")
    return files


def check_safetensors(path: Path) -> None:
    """Refuse a truncated or corrupt safetensors file by its header, without reading the data."""
    size = path.stat().st_size
    try:
        with path.open("rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if length > size - 8 or length > 100 * 2**20:
                raise ValueError("header length is past the end of the file")
            header = json.loads(f.read(length))
            if not isinstance(header, dict):
                raise ValueError("the header is not a JSON object")
        end = max((int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"),
                  default=0)
    except (struct.error, ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError) as exc:
        raise ModelFormatError(f"{path.name} is not a valid safetensors file ({exc})",
                               "re-download or re-save the checkpoint") from None
    if 8 + length + end > size:
        raise ModelFormatError(f"{path.name} is truncated: its header lists {8 + length + end} bytes, "
                               f"the file has {size}", "re-download or re-save the checkpoint")


def import_key(path: Path) -> str:
    stat = path.stat()
    return hashlib.sha256(f"{path.absolute()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]


def hf_folder(source: Source, settings=None, progress=None) -> Path:
    """An HF folder holding `source`: itself, or its cached fp32 import when it is a GGUF."""
    if source.kind == "hf":
        return source.path
    from edgeai.config import load_settings
    from edgeai.converters.hf import import_gguf
    from edgeai.converters.staging import staged_output

    settings = settings or load_settings()
    cached = settings.home / "cache" / "imports" / f"{source.name}-{import_key(source.path)}"
    if (cached / "config.json").is_file():
        return cached
    cached.parent.mkdir(parents=True, exist_ok=True)
    try:
        with staged_output(cached) as stage:
            import_gguf(source, stage, "fp32", progress)
    except (OSError, BadInput):
        if (cached / "config.json").is_file():  # another conversion imported it meanwhile
            return cached
        raise
    return cached
