"""Drafters: cheap guesses of the next tokens that the target model verifies (`runtime/speculative.py`).

A drafter sees the whole text so far (prompt + generated ids) and proposes up to `n` next ids. It
never samples: its guesses are deterministic (a lookup, a draft model's argmax), which is what
lets the verifier keep the target's distribution exactly (see speculative.py).

- `NgramDrafter`: prompt lookup (llama.cpp's lookup decoding idea): the last `n` ids, `n` from
  `n_max` down to `n_min`, matched against an index of everything seen; the ids that followed
  the most recent earlier occurrence are the guess. Free where nothing matches, strong where the
  answer quotes the prompt (or itself).
- `ModelDrafter`: a second, smaller llama.cpp model of the same vocabulary (checked at load),
  in its own one-sequence context, drafting greedily and stopping early where its top
  probability falls under `p_min` (llama.cpp's `--draft-p-min`); its cache keeps the common
  prefix with the target's accepted text, so each round evaluates only what is new.

`check_vocab` is the compatibility test llama.cpp's speculative examples make (same vocabulary
type, same BOS/EOS, the shared ids' texts equal, sizes within 128).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from edgeai.errors import BadInput

NGRAM_MAX = 4  # the longest suffix looked up (llama.cpp's lookup uses 1..4)
NGRAM_MIN = 2  # a one-token match guesses too often wrong to pay on a CPU verify
P_MIN = 0.75  # a draft model stops drafting below this top probability (llama-server's default)
VOCAB_SLACK = 128  # vocabulary sizes may differ by padding rows (llama.cpp allows 128)


class Drafter(Protocol):
    """Proposes the next ids of a text. `context` names the kind of the last guess (the match
    length for a lookup) so the verifier can keep acceptance statistics per kind."""

    context: int

    def draft(self, history: Sequence[int], n: int) -> list[int]: ...

    def close(self) -> None: ...


class NgramDrafter:
    """Prompt lookup over prompt + generated ids, indexed incrementally (each round is O(n_max))."""

    def __init__(self, n_max: int = NGRAM_MAX, n_min: int = NGRAM_MIN) -> None:
        self.n_max, self.n_min = n_max, max(1, n_min)
        self.context = 0
        self._seen: list[int] = []
        self._index: dict[tuple[int, ...], int] = {}  # n-gram -> position right after its latest end

    def _extend(self, history: Sequence[int]) -> None:
        if history[:len(self._seen)] != self._seen:  # another text (a new prompt): index afresh
            self._seen, self._index = [], {}
        start = len(self._seen)
        self._seen.extend(history[start:])
        # index n-grams that end before the last position only: the suffix itself must not match itself
        for end in range(max(start, 1), len(self._seen)):
            for n in range(self.n_min, self.n_max + 1):
                if end - n >= 0:
                    self._index[tuple(self._seen[end - n:end])] = end

    def draft(self, history: Sequence[int], n: int) -> list[int]:
        self._extend(list(history))
        self.context = 0
        text, out = list(self._seen), []
        while len(out) < n:
            size, at = self._lookup(text)
            if at is None:
                break
            self.context = self.context or size
            # what followed, as far as the text goes; a match near the end continues from the
            # guess itself (a repeated cycle)
            piece = text[at:at + n - len(out)]
            out += piece
            text += piece
        return out

    def _lookup(self, text: list[int]) -> tuple[int, int | None]:
        for size in range(self.n_max, self.n_min - 1, -1):
            if len(text) > size and (at := self._index.get(tuple(text[-size:]))) is not None:
                return size, at
        return 0, None

    def close(self) -> None:
        self._seen, self._index = [], {}


class ModelDrafter:
    """Greedy drafts from a small llama.cpp model (`load_draft_model` builds one)."""

    def __init__(self, lib, model, seqs, *, p_min: float = P_MIN, model_id: str = "") -> None:
        self._lib, self._model, self._seqs = lib, model, seqs
        self.p_min, self.model_id = p_min, model_id
        self.context = 0

    def draft(self, history: Sequence[int], n: int) -> list[int]:
        import numpy as np

        from edgeai.runtime.decode import SeqInput, common_prefix

        seqs = self._seqs
        if n <= 0 or len(history) + n > seqs.n_ctx:
            return []
        seqs.truncate(0, common_prefix(seqs.cached[0], history[:-1]))
        keep = seqs.seq_length(0)
        row = seqs.evaluate([SeqInput(0, list(history[keep:]))])[0][0]
        out: list[int] = []
        while True:
            token = int(np.argmax(row))
            top = np.exp(row - row[token])  # the top token's probability, without overflow
            if self.p_min > 0 and 1.0 / top.sum() < self.p_min:
                break
            out.append(token)
            if len(out) >= n:
                break
            row = seqs.evaluate([SeqInput(0, [token])])[0][0]
        return out

    def close(self) -> None:
        if self._seqs is not None:
            self._seqs.close()
            self._seqs = None
        if self._model is not None:
            self._model.close()
            self._model = None


# -- the vocabulary check ------------------------------------------------------------------
def vocab_facts(lib, model) -> dict:
    """What two models must share for one to draft for the other."""
    vocab = model.vocab
    n = lib.llama_vocab_n_tokens(vocab)
    return {"type": lib.llama_vocab_type(vocab), "n": n, "bos": lib.llama_vocab_bos(vocab),
            "eos": lib.llama_vocab_eos(vocab),
            "text": lambda i: lib.llama_vocab_get_text(vocab, i)}


def check_vocab(target: dict, draft: dict, target_id: str, draft_id: str) -> None:
    """Refuse a draft model whose ids do not mean the target's tokens (one BadInput line)."""
    why = None
    if target["type"] != draft["type"]:
        why = "different tokenizer types"
    elif (target["bos"], target["eos"]) != (draft["bos"], draft["eos"]):
        why = "different BOS/EOS tokens"
    elif abs(target["n"] - draft["n"]) > VOCAB_SLACK:
        why = f"{target['n']:,} vs {draft['n']:,} tokens"
    else:
        shared = min(target["n"], draft["n"])
        bad = next((i for i in range(shared) if target["text"](i) != draft["text"](i)), None)
        if bad is not None:
            why = f"token {bad} differs"
    if why:
        raise BadInput(f"draft model {draft_id} cannot draft for {target_id}: "
                       f"their vocabularies differ ({why})",
                       "pick a draft model of the same family (e.g. the 0.5B of the same series)")


def load_draft_model(lib, target_model, path, *, n_ctx: int, threads: int, target_id: str,
                     draft_id: str) -> ModelDrafter:
    """The draft model in its own one-sequence context, checked against the target's vocabulary."""
    from llama_cpp._internals import LlamaModel

    from edgeai.errors import ModelFormatError
    from edgeai.runtime.llamacpp_batch import Sequences
    from edgeai.runtime.llamacpp_build import model_params

    try:
        model = LlamaModel(path_model=str(path), params=model_params(lib, 0), verbose=False)
    except (ValueError, RuntimeError) as exc:
        raise ModelFormatError(f"llama.cpp could not load the draft model {draft_id}: {exc}") from None
    try:
        check_vocab(vocab_facts(lib, target_model), vocab_facts(lib, model), target_id, draft_id)
        seqs = Sequences(lib, model, n_ctx=n_ctx, n_batch=512, n_seq=1, threads=threads)
    except BaseException:
        model.close()
        raise
    return ModelDrafter(lib, model, seqs, model_id=draft_id)
