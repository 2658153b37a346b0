"""The few frozen types every part of edgeai shares.

Data only, no logic: the runtime yields `Chunk`s, the CLI, TUI, server and bench consume
them; `ModelSpec` is what the catalog resolver hands a backend. OpenAI-shaped dicts exist
only at the server's edge, never here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Message:
    role: str  # "system" | "user" | "assistant" | "tool"
    content: str
    images: tuple[Path, ...] = ()
    audio: Path | None = None
    tool_calls: tuple[ToolCall, ...] = ()  # an assistant's calls of the caller's functions
    tool_call_id: str | None = None  # a "tool" message: the call it answers


@dataclass(frozen=True)
class ToolCall:
    """A function call the model asked for: `arguments` is JSON text."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class GenParams:
    """Every sampling knob in one place; None means "the model's default"."""

    max_tokens: int = 512
    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    response_format: Mapping[str, Any] | None = None  # a JSON schema for constrained output
    ignore_eos: bool = False  # generate exactly max_tokens (benchmarks), as llama-bench and vLLM allow


@dataclass(frozen=True)
class LoadOptions:
    """How a model is loaded, apart from how it samples."""

    n_ctx: int = 4096
    n_threads: int | None = None  # None: decided from the machine (see config.default_threads)
    wait_policy: str | None = None  # OMP_WAIT_POLICY to load llama.cpp with (runtime/threads.py)
    n_batch: int = 512
    prefill_step: int | None = None  # prompt tokens per evaluation call; None: the backend's default
    gpu_layers: int | None = None  # None: all layers wherever the build can offload
    chat_template: str | None = None  # override the model's own template (a name or Jinja text)
    n_seq: int = 1  # sequences one context holds (batched decoding: drafts, a server's slots)
    draft: str = "off"  # speculative decoding: "off", "ngram" or a draft model (id or path)
    draft_max: int = 16  # most ids drafted per verify
    draft_min: int = 0  # fewer drafted ids than this are not verified
    draft_path: str | None = None  # the draft model's GGUF, resolved by the loader
    adapter_path: str | None = None  # an mlx-lm adapter folder (`edgeai finetune` OUT); mlx backend only
    mmproj_path: str | None = None  # a vision projector GGUF (llama.cpp's mmproj); llamacpp backend only


@dataclass(frozen=True)
class Chunk:
    """The only thing a backend ever yields.

    Text chunks carry `text` (answer) and/or `reasoning` (a thinking model's hidden part).
    Prefill progress chunks have both empty; they exist so a consumer can close the stream
    during a long prompt. The last chunk has `finish_reason` and the timing fields.
    """

    text: str = ""
    reasoning: str = ""
    token_ids: tuple[int, ...] = ()
    finish_reason: str | None = None  # "stop" | "length" | "cancelled"
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    prompt_tps: float | None = None
    gen_tps: float | None = None
    ttft_s: float | None = None
    peak_mem_mb: float | None = None
    drafted: int | None = None  # speculative decoding: draft ids verified (None: not drafting)
    accepted: int | None = None  # ... and accepted by the target


@dataclass(frozen=True)
class Capabilities:
    chat_template: bool = True
    vision: bool = False
    audio: bool = False
    grammar: bool = False
    logits: bool = False
    context_length: int = 0


@dataclass(frozen=True)
class ModelSpec:
    """A model resolved to local files: what a backend needs to load it."""

    id: str
    family: str = ""
    artifacts: Mapping[str, Path] = field(default_factory=dict)  # format -> local path
    chat_template: str | None = None  # a built-in template name or Jinja text; None: the model's own
    context_length: int = 0
    defaults: Mapping[str, Any] = field(default_factory=dict)  # per-model GenParams defaults
    license: str = ""
    source: str = ""
    sha256: str = ""
    chat: bool = True  # False for base models: they complete text, they do not converse

    def artifact(self, fmt: str) -> Path | None:
        return self.artifacts.get(fmt)


@dataclass(frozen=True)
class Hit:
    chunk_id: int
    text: str
    file: str
    page: int | None
    span: str
    score: float
    heading: str | None = None  # the heading path the passage sits under ("Install > Linux")
