"""Settings: one frozen dataclass and one loader with precedence CLI > environment > TOML > defaults.

Settings are passed as arguments; there is no global instance. The data dir is a platformdirs
user dir unless `EDGEAI_HOME` says otherwise (and the shared model cache a user cache dir
unless `EDGEAI_SHARED_CACHE` does); the TOML file is `<home>/config.toml` unless
`EDGEAI_CONFIG` names another.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from edgeai.errors import BadInput

if sys.version_info >= (3, 11):
    import tomllib
else:  # Jetson's JetPack 6 ships Python 3.10
    import tomli as tomllib

DEFAULT_MODEL = "qwen2.5-coder-0.5b-instruct"

# environment variable -> settings field
ENV_VARS = {
    "EDGEAI_MODEL": "model",
    "EDGEAI_BACKEND": "backend",
    "EDGEAI_CTX": "n_ctx",
    "EDGEAI_THREADS": "threads",
    "EDGEAI_WAIT_POLICY": "wait_policy",
    "EDGEAI_GPU_LAYERS": "gpu_layers",
    "EDGEAI_BATCH": "n_batch",
}


@dataclass(frozen=True)
class Settings:
    home: Path
    model: str = DEFAULT_MODEL
    backend: str | None = None  # None: chosen from the model's artifact format
    n_ctx: int = 4096
    threads: int | None = None  # headless commands; None: default_threads() (runtime/threads.py)
    wait_policy: str | None = None  # OMP_WAIT_POLICY of headless commands; None: "active"
    chat_threads: int | None = None  # the chat app's; None: all cores but one (the UI's)
    chat_wait_policy: str | None = None  # the chat app's; None: "passive"
    gpu_layers: int | None = None  # None: all layers where the build can offload
    n_batch: int | None = None  # prompt tokens per evaluation step; None: the backend's default
    models_home: Path | None = None  # None: <home>/models (EDGEAI_MODELS_DIR moves it, e.g. to a big disk)
    guard: dict[str, Any] | None = None  # the `[guard]` table as written; edgeai.guard.policy reads it

    @property
    def models_dir(self) -> Path:
        return self.models_home or self.home / "models"


def data_home() -> Path:
    env = os.environ.get("EDGEAI_HOME")
    if env:
        return Path(env).expanduser().resolve()
    import platformdirs

    return Path(platformdirs.user_data_dir("edgeai", appauthor=False))


def shared_models_dir() -> Path:
    """Where packaged models are assembled once per machine and linked into each data dir's
    models folder (`models/shared.py`): `EDGEAI_SHARED_CACHE`, else the user cache dir. A cache,
    not data: it can always be rebuilt from the installed weights packages, and the hard links
    in the data dirs keep their bytes if it is cleared."""
    env = os.environ.get("EDGEAI_SHARED_CACHE")
    if env:
        return Path(env).expanduser().resolve()
    import platformdirs

    return Path(platformdirs.user_cache_dir("edgeai", appauthor=False)) / "models"


def config_path(home: Path) -> Path:
    env = os.environ.get("EDGEAI_CONFIG")
    return Path(env).expanduser() if env else home / "config.toml"


def default_threads() -> int:
    """All cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS has no sched_getaffinity
        return max(1, os.cpu_count() or 1)


def _coerce(name: str, value: Any, source: str) -> Any:
    kind = {f.name: f.type for f in fields(Settings)}[name]
    if value is None or "int" not in str(kind):
        return value
    try:
        return int(value)
    except (TypeError, ValueError):
        raise BadInput(f"{source}: {name} must be an integer, got {value!r}") from None


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BadInput(f"config file {path} is not valid TOML: {exc}") from None
    known = {f.name for f in fields(Settings)} - {"home"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise BadInput(f"config file {path}: unknown setting(s) {', '.join(unknown)}",
                       f"known settings: {', '.join(sorted(known))}")
    return {k: _coerce(k, v, str(path)) for k, v in data.items()}


def load_settings(cli: Mapping[str, Any] | None = None) -> Settings:
    """Merge defaults, the TOML file, the environment and CLI values (None = not given)."""
    home = data_home()
    values: dict[str, Any] = _read_toml(config_path(home))
    for var, name in ENV_VARS.items():
        if os.environ.get(var):
            values[name] = _coerce(name, os.environ[var], var)
    if os.environ.get("EDGEAI_MODELS_DIR"):
        values["models_home"] = Path(os.environ["EDGEAI_MODELS_DIR"]).expanduser().resolve()
    elif "models_home" in values:
        values["models_home"] = Path(values["models_home"]).expanduser()
    for name, value in (cli or {}).items():
        if value is not None:
            values[name] = value
    return replace(Settings(home=home), **values)
