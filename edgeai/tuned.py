"""What `edgeai doctor --tune` measured per model on this machine: `<home>/tuned.json`.

Machine-wide choices (threads, n_batch, the OpenMP wait policy of headless commands and of the
chat) are plain settings in config.toml, which a user may edit. The choices that depend on a
model — which installed artifact decodes fastest (and which one the chat may use, with the
reason when it differs), and whether speculative drafting won — live here, keyed by the model:
a catalog name (`qwen2.5-coder-0.5b-instruct`, whatever quant or format was asked for) or a
path's resolved form. Commands read them as defaults; a flag always overrides. The file is
written atomically and only by the tuner; an unreadable file reads as "nothing tuned".
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

FILE = "tuned.json"
VERSION = 1


@dataclass(frozen=True)
class ModelTuning:
    """One model's measured choices. `None`/"off" mean "not measured" or "did not win"."""

    format: str | None = None  # the artifact `run`, `serve` and `bench` use by default ("gguf", "onnx", ...)
    path: str | None = None  # that artifact (a file or an export folder)
    chat_format: str | None = None  # the artifact the chat uses (may differ: the chat needs KV features)
    chat_path: str | None = None
    chat_why: str = ""  # why the chat's format differs from `format`, in words for the user
    draft: str = "off"  # what `--draft auto` does: "off", "ngram" or a draft model id
    draft_speedup: float | None = None  # measured speed-up of `draft` over no drafting
    measured: list[dict] = field(default_factory=list)  # the probe rows behind the choice
    at: str = ""  # when it was measured (ISO 8601)


def tuning_key(model: str) -> str:
    """The key a model's tuning is stored under: its catalog name, or a path's resolved form."""
    from edgeai.models.catalog import parse_id
    from edgeai.models.resolve import looks_like_path

    if model.startswith(("http://", "https://")):
        return model
    if looks_like_path(model):
        return str(Path(model).expanduser().resolve())
    return parse_id(model)[0]


def _read(home: Path) -> dict:
    try:
        data = json.loads((home / FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and data.get("version") == VERSION else {}


def model_tuning(home: Path, model: str) -> ModelTuning | None:
    """The saved tuning of `model` (an id or a path), or None when it was never tuned."""
    entry = _read(home).get("models", {}).get(tuning_key(model))
    if not isinstance(entry, dict):
        return None
    known = {f.name for f in fields(ModelTuning)}
    try:
        return ModelTuning(**{k: v for k, v in entry.items() if k in known})
    except TypeError:
        return None


def save_model_tuning(home: Path, model: str, tuning: ModelTuning) -> Path:
    """Record `model`'s tuning (replacing the last one), keeping every other model's."""
    from edgeai.fileio import atomic_write

    data = _read(home) or {"version": VERSION, "models": {}}
    data.setdefault("models", {})[tuning_key(model)] = asdict(tuning)
    path = home / FILE
    atomic_write(path, json.dumps(data, indent=2) + "\n")
    return path
