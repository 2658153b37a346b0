"""Runners: a loaded model that turns token ids into logits, for validation.

Every format's module offers `open_runner(path) -> Runner`; validation feeds the same ids to
the source's runner and the export's and compares what comes back. A runner also encodes text
with the tokenizer that travelled with its model, so validation can tell whether it did.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np


class Runner(Protocol):
    label: str  # e.g. "transformers fp32", "llama.cpp"
    max_tokens: int  # the longest id sequence it should be given (MLX on Linux is slow)

    def logits(self, ids: Sequence[int]) -> np.ndarray: ...  # float32, len(ids) x vocab

    def encode(self, text: str) -> list[int]: ...  # with BOS where the model wants one

    def close(self) -> None: ...


class TorchRunner:
    """A Hugging Face folder through transformers in fp32 on the CPU: the reference."""

    label = "transformers fp32"
    max_tokens = 4096

    def __init__(self, folder: Path):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging

        logging.disable_progress_bar()  # our own progress display is the only one
        logging.set_verbosity_error()
        self._torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        self.model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()

    def logits(self, ids: Sequence[int]):
        torch = self._torch
        with torch.inference_mode():
            tensor = torch.tensor([list(ids)], dtype=torch.long)
            out = self.model(input_ids=tensor, attention_mask=torch.ones_like(tensor))
        return out.logits[0].float().numpy()

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text)["input_ids"])

    def close(self) -> None:
        self.model = None


class BackendRunner:
    """A loaded runtime backend as a Runner: its `logits()` and `prompt_tokens()`."""

    max_tokens = 4096

    def __init__(self, backend, artifact: str, path: Path, **load_options):
        from edgeai.config import load_settings
        from edgeai.runtime.threads import HEADLESS, for_surface
        from edgeai.types import LoadOptions, ModelSpec

        spec = ModelSpec(id=Path(path).name, artifacts={artifact: Path(path)})
        headless = for_surface(load_settings(), HEADLESS)  # validation is a headless command
        backend.load(spec, LoadOptions(**{"n_threads": headless.threads, "wait_policy": headless.wait_policy,
                                          **load_options}))
        self.backend = backend

    def logits(self, ids: Sequence[int]):
        return self.backend.logits(list(ids))

    def encode(self, text: str) -> list[int]:
        return self.backend.prompt_tokens(text)

    def close(self) -> None:
        self.backend.close()


class LlamaCppRunner(BackendRunner):
    """A GGUF file through our llamacpp backend (with its AMX guard)."""

    label = "llama.cpp"

    def __init__(self, path: Path, n_ctx: int = 2048):
        from edgeai.runtime.llamacpp import LlamaCppBackend

        super().__init__(LlamaCppBackend(), "gguf", path, n_ctx=n_ctx, n_batch=512)
