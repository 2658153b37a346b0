"""Opens a model for use: resolves the id, picks the backend, loads it, builds GenParams.

The one place the CLI, the chat, the server and the bench share to go from "a model id and
some flags" to "a loaded backend and the sampling settings for it".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from edgeai.config import Settings
from edgeai.errors import BadInput
from edgeai.formats import FORMAT_BACKENDS
from edgeai.runtime import get_backend
from edgeai.runtime.base import Backend
from edgeai.runtime.threads import HEADLESS, for_surface
from edgeai.types import GenParams, LoadOptions, ModelSpec

_GEN_FIELDS = {f.name for f in fields(GenParams)}


def pick_backend(spec: ModelSpec, requested: str | None) -> str:
    if requested:
        return requested
    for fmt in spec.artifacts:
        if fmt in FORMAT_BACKENDS:
            return FORMAT_BACKENDS[fmt]
    if spec.family == "echo":
        return "echo"
    if spec.family == "remote":
        return "remote"
    if "ct2" in spec.artifacts:  # Whisper in CTranslate2's layout: edgeai.speech's, not a chat backend's
        name = spec.id.partition(":")[0]
        raise BadInput(f"{name} is a speech-to-text model, not a chat model",
                       f"transcribe with it: edgeai transcribe FILE --model {name}")
    raise BadInput(f"no backend runs model {spec.id} here", "pass --backend NAME")


def is_endpoint(model: str) -> bool:
    """An http(s) URL names a remote, OpenAI-compatible server rather than local files."""
    return model.startswith(("http://", "https://"))


def tuned_artifact(settings: Settings, model: str, backend: str | None = None,
                   chat: bool = False) -> str | None:
    """The artifact `doctor --tune` chose for `model` (`tuned.json`; the chat's own choice for
    the chat), or None when it was never tuned or `backend` asks for another runtime: then the
    catalog's artifact, as before."""
    from edgeai.tuned import model_tuning

    tuning = model_tuning(settings.home, model)
    if tuning is None:
        return None
    fmt, path = (tuning.chat_format, tuning.chat_path) if chat else (tuning.format, tuning.path)
    if backend and FORMAT_BACKENDS.get(fmt or "") != backend:
        return None
    return path


def model_spec(settings: Settings, model: str, backend: str | None, progress=None,
               chat: bool = False) -> ModelSpec:
    """The spec a request names: any name on echo, a server URL, else the catalog/path resolver
    (a bare catalog id with the tuned artifact first, unless another backend was asked for)."""
    if backend == "echo" and model != "echo":  # any name works on echo; it needs no files
        return ModelSpec(id=model, family="echo")
    if is_endpoint(model):  # an OpenAI-compatible server: nothing local to resolve
        from edgeai.runtime.remote import remote_spec

        return remote_spec(model)
    if backend == "mlx" and (Path(model).expanduser() / "config.json").is_file():
        # mlx-lm loads any HF-layout folder as it is, with or without an edgeai manifest (a
        # fine-tune's base is often a plain HF folder or a GGUF's cached import)
        folder = Path(model).expanduser().resolve()
        return ModelSpec(id=folder.name, artifacts={"mlx": folder}, source="path")
    from edgeai.models import resolve

    prefer = tuned_artifact(settings, model, backend, chat)
    return resolve(model, settings, progress=progress, prefer=prefer)


def load_model(settings: Settings, model: str | None = None, backend: str | None = None,
               chat_template: str | None = None, progress=None, n_seq: int = 1,
               chat: bool = False, draft: str | None = "off", draft_max: int | None = None,
               draft_min: int | None = None, adapter: str | None = None,
               mmproj: str | None = None) -> tuple[Backend, ModelSpec]:
    """Resolve and load a model. `n_seq` sequences share one context of `n_ctx` × `n_seq` tokens
    (a server's slots: `--ctx` stays what one request may use). Threads and the wait policy
    are the headless surface's unless `settings` were resolved for another
    (`threads.for_surface`: the chat app's). `adapter`: an mlx-lm adapter folder (a fine-tune's
    OUT), which only the mlx backend applies. `mmproj`: a vision projector GGUF for a VLM, which
    only the llamacpp backend loads (its images then go to the model, not through OCR)."""
    model = model or settings.model
    backend = backend or settings.backend
    spec = model_spec(settings, model, backend, progress, chat=chat)  # chat: the chat's tuned artifact
    chosen = pick_backend(spec, backend)
    if adapter and chosen != "mlx":
        raise BadInput(f"--adapter is an MLX adapter: the {chosen} backend cannot apply it",
                       "run it on the mlx backend, or run an export of the tuned model "
                       "(edgeai finetune ... --export gguf:Q4_K_M)")
    if mmproj and chosen != "llamacpp":
        raise BadInput(f"--mmproj is a llama.cpp vision projector: the {chosen} backend cannot load it")
    instance = get_backend(chosen)
    settings = for_surface(settings, HEADLESS)  # keeps what the chat's loader resolved for the app
    opts = LoadOptions(n_ctx=settings.n_ctx * n_seq, n_threads=settings.threads,
                       wait_policy=settings.wait_policy, gpu_layers=settings.gpu_layers,
                       chat_template=chat_template, n_batch=max(512, settings.n_batch or 0),
                       prefill_step=settings.n_batch, n_seq=n_seq, adapter_path=adapter, mmproj_path=mmproj,
                       **draft_options(settings, model, instance, draft, draft_max, draft_min))
    instance.load(spec, opts)
    return instance, spec


def draft_options(settings: Settings, model: str, instance: Backend, draft: str | None,
                  draft_max: int | None = None, draft_min: int | None = None) -> dict:
    """`--draft` for LoadOptions: `auto` resolved through the saved tune (off where nothing won or
    the backend cannot batch), a draft model id resolved to its GGUF; a backend without the
    batched step refuses an explicit choice."""
    from edgeai.runtime.decode import BatchedStep
    from edgeai.runtime.speculative import DRAFT_MAX, DRAFT_MIN, check_draft_lengths, resolve_draft

    lengths = {"draft_max": DRAFT_MAX if draft_max is None else draft_max,
               "draft_min": DRAFT_MIN if draft_min is None else draft_min}
    check_draft_lengths(lengths["draft_max"], lengths["draft_min"])
    choice = resolve_draft(draft, settings.home, model)
    if choice != "off" and not isinstance(instance, BatchedStep):
        if (draft or "auto") == "auto":
            return {"draft": "off", **lengths}
        raise BadInput(f"--draft {choice} needs the batched step, which the {instance.name} backend "
                       "does not have (it decodes one token at a time)",
                       "use --draft off, or the llamacpp backend")
    path = None
    if choice not in ("off", "ngram"):
        path = model_spec(settings, choice, "llamacpp").artifact("gguf")  # its GGUF, whatever was tuned
        if path is None:
            raise BadInput(f"draft model {choice} has no GGUF file", "a draft model runs on llama.cpp")
    return {"draft": choice, "draft_path": str(path) if path else None, **lengths}


def check_overrides(overrides: Mapping[str, Any]) -> None:
    """Check the user's sampling flags alone, before any model is loaded."""
    gen_params(ModelSpec(id="-"), overrides)


def gen_params(spec: ModelSpec, overrides: Mapping[str, Any]) -> GenParams:
    """The model's catalog defaults, then the user's flags (None = not given), checked."""
    values = {k: v for k, v in spec.defaults.items() if k in _GEN_FIELDS}
    values.update({k: v for k, v in overrides.items() if v is not None})
    params = replace(GenParams(), **values)
    checks = [
        (params.temperature >= 0, "--temperature must be 0 or more"),
        (params.max_tokens > 0, "--max-tokens must be at least 1"),
        (0 < params.top_p <= 1, "--top-p must be in (0, 1]"),
        (params.top_k >= 0, "--top-k must be 0 or more"),
        (0 <= params.min_p <= 1, "--min-p must be in [0, 1]"),
        (params.repeat_penalty > 0, "--repeat-penalty must be above 0"),
    ]
    for ok, message in checks:
        if not ok:
            raise BadInput(message)
    return params
