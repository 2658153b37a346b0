"""CTranslate2 Whisper (`model.bin`) -> openai-whisper's checkpoint layout, converted once and cached.

Boundary: a CT2 model folder in, a `.pt` file (`{"dims", "model_state_dict", "alignment_heads"}`)
out under `<home>/cache/openai-whisper/`, keyed by the model.bin's sha256 (read from the
resolver's stamp, so a cached conversion costs no hashing). No openai-whisper `.pt` ships on any
registry we can reach; the packaged CT2 weights are the same network, renamed and with fused
projections (the verified mapping is in the research notes' appendix, restated in `_rename`).
Tensors keep their stored dtype (float16): openai-whisper's `load_state_dict` casts them into
its float32 parameters. Reading is variable by variable; numpy only until the final save.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any, BinaryIO

from edgeai.errors import ModelFormatError

VERSION = 1  # bump when the produced checkpoint would change
_DTYPES = {0: "<f4", 1: "i1", 2: "<i2", 3: "<i4", 4: "<f2"}  # 5 (bf16) has no numpy dtype: refused


def _read(handle: BinaryIO, fmt: str) -> tuple:
    size = struct.calcsize("<" + fmt)
    data = handle.read(size)
    if len(data) != size:
        raise ModelFormatError(f"{getattr(handle, 'name', 'model.bin')} is truncated")
    return struct.unpack("<" + fmt, data)


def _string(handle: BinaryIO) -> str:
    (n,) = _read(handle, "H")
    return handle.read(n)[:-1].decode("utf-8")  # the length counts the closing NUL


def read_ct2(path: Path) -> dict[str, Any]:
    """name -> numpy array of every variable in a CTranslate2 model.bin (aliases resolved)."""
    import numpy as np

    with Path(path).open("rb") as handle:
        (version,) = _read(handle, "I")
        spec = _string(handle) if version >= 2 else ""
        if version < 5 or spec != "WhisperSpec":
            raise ModelFormatError(f"{path} is not a CTranslate2 Whisper model (version {version}, "
                                   f"spec {spec or '?'})")
        _read(handle, "I")  # the spec's revision
        (count,) = _read(handle, "I")
        out: dict[str, Any] = {}
        for _ in range(count):
            name = _string(handle)
            (rank,) = _read(handle, "B")
            dims = _read(handle, "I" * rank) if rank else ()
            (dtype,) = _read(handle, "B")
            (nbytes,) = _read(handle, "I")
            if dtype not in _DTYPES:
                raise ModelFormatError(f"{path}: {name} has a dtype ({dtype}) this converter does not read")
            data = handle.read(nbytes)
            if len(data) != nbytes:
                raise ModelFormatError(f"{path} is truncated")
            out[name] = np.frombuffer(data, dtype=_DTYPES[dtype]).reshape(dims)
        (aliases,) = _read(handle, "I")
        for _ in range(aliases):
            alias, target = _string(handle), _string(handle)
            out[alias] = out[target]
    return out


_FIXED = {
    "encoder/conv1": "encoder.conv1", "encoder/conv2": "encoder.conv2",
    "encoder/layer_norm": "encoder.ln_post", "decoder/layer_norm": "decoder.ln",
    "decoder/embeddings": "decoder.token_embedding",
}
_IN_LAYER = {
    "self_attention/linear_1": "attn.out", "self_attention/layer_norm": "attn_ln",
    "ffn/linear_0": "mlp.0", "ffn/linear_1": "mlp.2", "ffn/layer_norm": "mlp_ln",
    "attention/linear_0": "cross_attn.query", "attention/linear_2": "cross_attn.out",
    "attention/layer_norm": "cross_attn_ln",
}
_FUSED = {"self_attention/linear_0": ("attn.query", "attn.key", "attn.value"),
          "attention/linear_1": ("cross_attn.key", "cross_attn.value")}
_LEAF = {"weight": "weight", "bias": "bias", "gamma": "weight", "beta": "bias"}
_LAYER = re.compile(r"^(encoder|decoder)/layer_(\d+)/(.+)/(weight|bias|gamma|beta)$")


def _rename(variables: dict[str, Any]) -> dict[str, Any]:
    """CT2 names -> openai-whisper state-dict names; fused QKV / KV split, K biases dropped
    (Whisper's keys have none: CT2 stores zeros there)."""
    sd: dict[str, Any] = {
        "encoder.positional_embedding": variables["encoder/position_encodings/encodings"],
        "decoder.positional_embedding": variables["decoder/position_encodings/encodings"],
    }
    for name, value in variables.items():
        if value.ndim == 0 or "position_encodings" in name or name == "decoder/projection/weight":
            continue  # scalars are spec options; the projection is tied to the embedding
        match = _LAYER.match(name)
        if match:
            side, index, inner, leaf = match.groups()
            prefix = f"{side}.blocks.{index}."
            if inner in _FUSED:
                targets = _FUSED[inner]
                for target, piece in zip(targets, _split(value, len(targets)), strict=True):
                    if leaf == "bias" and target.endswith("key"):
                        continue
                    sd[f"{prefix}{target}.{_LEAF[leaf]}"] = piece
            elif inner in _IN_LAYER:
                sd[f"{prefix}{_IN_LAYER[inner]}.{_LEAF[leaf]}"] = value
            else:
                raise ModelFormatError(f"unexpected CTranslate2 variable {name}")
            continue
        base, _, leaf = name.rpartition("/")
        if base not in _FIXED or leaf not in _LEAF:
            raise ModelFormatError(f"unexpected CTranslate2 variable {name}")
        sd[f"{_FIXED[base]}.{_LEAF[leaf]}"] = value
    return sd


def _split(value: Any, parts: int) -> list[Any]:
    size = value.shape[0] // parts
    return [value[i * size:(i + 1) * size] for i in range(parts)]


def _layers(variables: dict[str, Any], side: str) -> int:
    found = {int(m.group(2)) for n in variables if (m := _LAYER.match(n)) and m.group(1) == side}
    return max(found) + 1 if found else 0


def dims_of(variables: dict[str, Any]) -> dict[str, int]:
    """openai-whisper's ModelDimensions, read off the tensors' shapes and the head counts."""
    conv1 = variables["encoder/conv1/weight"]
    emb = variables["decoder/embeddings/weight"]
    return {
        "n_mels": int(conv1.shape[1]),
        "n_audio_ctx": int(variables["encoder/position_encodings/encodings"].shape[0]),
        "n_audio_state": int(conv1.shape[0]),
        "n_audio_head": int(variables["encoder/num_heads"]),
        "n_audio_layer": _layers(variables, "encoder"),
        "n_vocab": int(emb.shape[0]),
        "n_text_ctx": int(variables["decoder/position_encodings/encodings"].shape[0]),
        "n_text_state": int(emb.shape[1]),
        "n_text_head": int(variables["decoder/num_heads"]),
        "n_text_layer": _layers(variables, "decoder"),
    }


def convert(folder: Path, out: Path) -> Path:
    """Write the openai-whisper checkpoint of the CT2 model in `folder` to `out` (atomically)."""
    import torch

    from edgeai.fileio import atomic_writer

    variables = read_ct2(folder / "model.bin")
    sd = {name: torch.from_numpy(value.copy()) for name, value in _rename(variables).items()}
    heads: list[list[int]] = []
    config = folder / "config.json"
    if config.is_file():  # the word-timing heads OpenAI chose per model; CT2's config keeps them
        heads = json.loads(config.read_text(encoding="utf-8")).get("alignment_heads") or []
    with atomic_writer(out) as handle:
        torch.save({"dims": dims_of(variables), "model_state_dict": sd, "alignment_heads": heads,
                    "edgeai_converter": VERSION}, handle)
    return out


def cached_checkpoint(folder: Path, model_sha256: str, cache_dir: Path) -> Path:
    """The converted checkpoint for a CT2 folder whose model.bin has `model_sha256`: made once
    under a lock (two processes never convert the same model twice at once)."""
    from edgeai.models.resolve import file_lock

    out = cache_dir / f"{model_sha256[:16]}-v{VERSION}.pt"
    if out.is_file():
        return out
    with file_lock(out):
        if not out.is_file():
            convert(folder, out)
    return out
