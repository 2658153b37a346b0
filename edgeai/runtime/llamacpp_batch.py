"""One llama.cpp context holding several sequences, evaluated together: the batched step.

`Sequences` owns a `llama_context` created with `n_seq_max` sequences over one unified KV
cache (every sequence may use the whole window) and one `llama_batch`. `evaluate` appends
tokens to one or more sequences in one `llama_decode` call (split only where the inputs exceed
`n_batch`), with per-token sequence ids and logits flags, and returns logits only at the
positions asked for. `Sampler` is one sequence's llama.cpp sampler chain (penalties, grammar,
top-k/top-p/min-p, temperature, seeded draw — the order llama-cpp-python's `Llama` used), which
samples from the context's logits directly or from a row `evaluate` returned.

llama-cpp-python's `Llama` object cannot create such a context (it has no `n_seq_max`); its
low-level API (`llama_init_from_model`, `llama_batch_init`, `llama_memory_seq_*`) is all here.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import TYPE_CHECKING

from edgeai.errors import ContextOverflow, EdgeAIError
from edgeai.runtime.decode import SeqInput
from edgeai.types import GenParams

if TYPE_CHECKING:
    import numpy as np

PENALTY_LAST_N = 64  # tokens the repeat/presence/frequency penalties look back at (Llama's default)


class Sequences:
    """A context of `n_seq` sequences; positions and cached tokens are tracked per sequence."""

    def __init__(self, llama_cpp, model, *, n_ctx: int, n_batch: int, n_seq: int, threads: int) -> None:
        from llama_cpp._internals import LlamaContext
        from llama_cpp._utils import suppress_stdout_stderr

        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = n_batch
        params.n_ubatch = min(n_batch, 512)  # as Llama() had it: the compute buffers stay small
        params.n_seq_max = n_seq
        params.kv_unified = True  # one cache shared by all sequences: each may fill the window
        params.n_threads = params.n_threads_batch = threads
        params.no_perf = True
        # as llama-cpp-python's Llama() had it (same numerics as before); AUTO is a speed question
        # for the GPU builds, to be measured there
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        try:
            with suppress_stdout_stderr(disable=False):  # llama.cpp's own log lines stay off the terminal
                self._ctx = LlamaContext(model=model, params=params, verbose=False)
        except ValueError as exc:
            raise EdgeAIError(f"llama.cpp could not create a context of {n_ctx} tokens: {exc}",
                              "try a smaller --ctx") from None
        self._lib = llama_cpp
        self.ctx = self._ctx.ctx
        self.n_ctx = llama_cpp.llama_n_ctx(self.ctx)
        self.n_batch = n_batch
        self.n_seq = n_seq
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(model.vocab)
        self._batch = llama_cpp.llama_batch_init(n_batch, 0, n_seq)
        self._memory = llama_cpp.llama_get_memory(self.ctx)
        self.cached: list[list[int]] = [[] for _ in range(n_seq)]  # tokens each sequence holds

    def close(self) -> None:
        if self._batch is not None:
            self._lib.llama_batch_free(self._batch)
            self._batch = None
        self._ctx.close()

    # -- the batched step ----------------------------------------------------------------
    def seq_length(self, seq: int) -> int:
        return len(self.cached[seq])

    def truncate(self, seq: int, length: int) -> None:
        """Keep the first `length` positions of `seq`. A model whose memory cannot drop a tail
        (recurrent layers) loses the whole sequence instead: the caller re-evaluates it."""
        if length >= len(self.cached[seq]):
            return
        if not (length > 0 and self._lib.llama_memory_seq_rm(self._memory, seq, length, -1)):
            self._lib.llama_memory_seq_rm(self._memory, seq, 0, -1)
            length = 0
        del self.cached[seq][length:]

    def evaluate(self, inputs: Sequence[SeqInput]) -> list[np.ndarray]:
        """Append tokens to sequences (one input per sequence) in as few `llama_decode` calls as
        `n_batch` allows; logits (float32 copies) only at each input's `logits_at` positions,
        in position order."""
        import numpy as np

        if len({item.seq for item in inputs}) < len(inputs):
            raise ValueError("one input per sequence in an evaluate call")
        flat, counts = [], []  # (seq, token, position, row wanted) in batch order; rows per input
        for item in inputs:
            wanted = {i % len(item.tokens) for i in item.logits_at} if item.tokens else set()
            flat.extend(self._entries(item.seq, item.tokens, wanted))
            counts.append(len(wanted))
        rows: list[np.ndarray] = []
        for lo in range(0, len(flat), self.n_batch):
            part = flat[lo:lo + self.n_batch]
            self._decode(part)
            rows.extend(self.logits_row(i) for i, entry in enumerate(part) if entry[3])
            for seq, token, _, _ in part:
                self.cached[seq].append(token)
        out, k = [], 0
        for n in counts:
            out.append(np.stack(rows[k:k + n]) if n else np.empty((0, self.n_vocab), np.float32))
            k += n
        return out

    def append(self, seq: int, tokens: Sequence[int]) -> None:
        """Evaluate `tokens` for one sequence, logits at the last only; they stay in the context
        for `Sampler.sample` (no copy): the decode loop's step."""
        self._decode(self._entries(seq, tokens, {len(tokens) - 1}))
        self.cached[seq].extend(int(t) for t in tokens)

    def _entries(self, seq: int, tokens: Sequence[int], wanted: set[int]) -> list[tuple[int, int, int, bool]]:
        """The batch entries that append `tokens` to `seq`: (seq, token, position, logits?)."""
        start = len(self.cached[seq])
        if start + len(tokens) > self.n_ctx:
            raise ContextOverflow(start + len(tokens), self.n_ctx)
        return [(seq, int(t), start + i, i in wanted) for i, t in enumerate(tokens)]

    def logits_row(self, index: int) -> np.ndarray:
        """A copy of the logits of the `index`-th token of the last decode call."""
        import numpy as np

        pointer = self._lib.llama_get_logits_ith(self.ctx, index)
        return np.ctypeslib.as_array(pointer, shape=(self.n_vocab,)).copy()

    def _decode(self, entries: list[tuple[int, int, int, bool]]) -> None:
        batch = self._batch
        batch.n_tokens = len(entries)
        for i, (seq, token, pos, logits) in enumerate(entries):
            batch.token[i] = token
            batch.pos[i] = pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq
            batch.logits[i] = logits
        code = self._lib.llama_decode(self.ctx, batch)
        if code != 0:  # the memory is left as it was before the call
            raise EdgeAIError(f"llama.cpp could not evaluate {len(entries)} tokens (llama_decode "
                              f"returned {code}: {'no room in the KV cache' if code == 1 else 'error'})")


class Sampler:
    """One sequence's sampler chain; `sample` also feeds the chosen token to its penalties and
    grammar (llama.cpp's accept)."""

    def __init__(self, llama_cpp, model, params: GenParams, seed: int, grammar=None) -> None:
        from llama_cpp._internals import LlamaSampler

        self._lib = llama_cpp
        chain = LlamaSampler()
        chain.add_penalties(n_vocab=llama_cpp.llama_vocab_n_tokens(model.vocab),
                            penalty_last_n=PENALTY_LAST_N, penalty_repeat=params.repeat_penalty,
                            penalty_freq=params.frequency_penalty, penalty_present=params.presence_penalty)
        if grammar is not None:
            chain.add_grammar(model, grammar)
        if params.temperature <= 0:
            chain.add_greedy()
        else:
            chain.add_top_k(params.top_k)
            chain.add_top_p(params.top_p, 1)
            chain.add_min_p(params.min_p, 1)
            chain.add_temp(params.temperature)
            chain.add_dist(seed)
        self._chain = chain
        self._candidates = None  # a token-data array, made on the first `sample_row`

    def sample(self, sequences: Sequences, index: int = -1) -> int:
        """From the logits of the `index`-th output of the last decode call (-1: the last)."""
        return self._lib.llama_sampler_sample(self._chain.sampler, sequences.ctx, index)

    def sample_row(self, row: np.ndarray) -> int:
        """From a row of logits `Sequences.evaluate` returned (after later decode calls too)."""
        from llama_cpp._internals import LlamaTokenDataArray

        if self._candidates is None:
            self._candidates = LlamaTokenDataArray(n_vocab=len(row))
        cur = self._candidates
        cur.copy_logits(row)
        cur.candidates.selected = -1
        self._lib.llama_sampler_apply(self._chain.sampler, ctypes.byref(cur.candidates))
        token = int(cur.candidates_data.id[cur.candidates.selected])
        self._lib.llama_sampler_accept(self._chain.sampler, token)
        return token

    def close(self) -> None:
        self._chain.close()
