"""The Backend contract every runtime satisfies, and `generate()`, which joins a stream.

A backend is a small class holding one loaded model. `stream()` is a generator of `Chunk`s:
closing it stops generation, also during a long prefill (backends yield empty progress
chunks between prompt batches so there is a point to stop at). A loaded backend is not
thread-safe; callers hold one lock per loaded model for a whole turn.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from edgeai.types import Capabilities, Chunk, GenParams, LoadOptions, Message, ModelSpec

if TYPE_CHECKING:
    import numpy as np


@runtime_checkable
class Backend(Protocol):
    name: str
    capabilities: Capabilities

    def load(self, spec: ModelSpec, opts: LoadOptions) -> None: ...

    def stream(self, prompt: str | list[Message], params: GenParams) -> Iterator[Chunk]: ...

    def tokenize(self, text: str) -> list[int]: ...

    def detokenize(self, ids: list[int]) -> str: ...

    def close(self) -> None: ...


# -- optional abilities: a backend has one when it has the methods; callers check with
# isinstance(backend, Ability), never with hasattr probes -----------------------------------
@runtime_checkable
class PromptTokens(Protocol):
    """The exact tokens a prompt becomes (messages through the chat template): context trimming
    counts with it, the bench builds exact-length prompts with it."""

    def prompt_tokens(self, prompt: str | list[Message]) -> list[int]: ...


@runtime_checkable
class KVState(Protocol):
    """A conversation's KV cache to and from a file, so a conversation resumes instantly.
    `restore_state` returns the tokens restored (0: the file was not for this model);
    `clear_state` forgets the cache (the next prompt is evaluated from scratch)."""

    def save_state(self, path: Path) -> int: ...

    def restore_state(self, path: Path) -> int: ...

    def clear_state(self) -> None: ...


@runtime_checkable
class Offload(Protocol):
    """How many layers the backend offloaded to a GPU (-1: all, 0: none), for the bench's records."""

    gpu_layers: int | None


@runtime_checkable
class Logits(Protocol):
    """Logits for every position of a token sequence: validation and perplexity."""

    def logits(self, ids: list[int]) -> np.ndarray: ...


@runtime_checkable
class Drafting(Protocol):
    """Speculative decoding on the batched step (runtime/speculative.py): `draft` is "off",
    "ngram" or the draft model's id; `set_draft` switches it between replies (the chat's /draft;
    `path`: a draft model's GGUF)."""

    draft: str

    def set_draft(self, draft: str, path: str | None = None, draft_max: int | None = None,
                  draft_min: int | None = None) -> None: ...

    def drafter(self):
        """A drafter for one reply (runtime/drafts.py)."""

    def draft_policy(self):
        """A reply's `speculative.DraftPolicy`, sharing the costs measured so far."""


def draft_of(backend) -> str:
    """What `backend` drafts with: "off" where it does not draft or cannot."""
    return backend.draft if isinstance(backend, Drafting) else "off"


@dataclass(frozen=True)
class Result:
    """A whole reply: the text joined from a stream, plus the last chunk's statistics."""

    text: str
    reasoning: str
    final: Chunk


def final_chunk(*, finish_reason: str, prompt_tokens: int | None, completion_tokens: int,
                start: float, first: float | None, last: float | None, text: str = "",
                reasoning: str = "", token_ids: tuple[int, ...] = (),
                peak_mem_mb: float | None = None) -> Chunk:
    """A stream's last chunk, with the timing figures every backend derives the same way:
    TTFT = first token - call; prompt tok/s = prompt tokens / TTFT; decode tok/s =
    (completion tokens - 1) / (last token - first token)."""
    ttft = (first - start) if first else None
    decoding = completion_tokens > 1 and first is not None and last is not None and last > first
    return Chunk(text=text, reasoning=reasoning, token_ids=token_ids, finish_reason=finish_reason,
                 prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, ttft_s=ttft,
                 prompt_tps=prompt_tokens / ttft if ttft and prompt_tokens else None,
                 gen_tps=(completion_tokens - 1) / (last - first) if decoding else None,
                 peak_mem_mb=peak_mem_mb)


STAT_FIELDS = ("finish_reason", "prompt_tokens", "completion_tokens", "ttft_s", "prompt_tps",
               "gen_tps", "peak_mem_mb", "drafted", "accepted")


def chunk_stats(final: Chunk | None) -> dict:
    """The statistics of a stream's last chunk, every field present (None where unknown)."""
    return {key: getattr(final, key, None) for key in STAT_FIELDS}


def generate(backend: Backend, prompt: str | list[Message], params: GenParams) -> Result:
    text: list[str] = []
    reasoning: list[str] = []
    last = Chunk()
    for chunk in backend.stream(prompt, params):
        text.append(chunk.text)
        reasoning.append(chunk.reasoning)
        last = chunk
    return Result("".join(text), "".join(reasoning), last)
