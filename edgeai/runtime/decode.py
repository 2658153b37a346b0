"""The one token loop every local backend feeds with its own step, and the prompt that precedes it.

A local backend is "load + step": it turns a prompt into tokens through `ChatPrompt` (the chat
template, the BOS rule, the eager checks) and hands `run` a `TokenStep` for one generation —
`prefill` (the prompt, in small evaluation calls), `sample` (the next token from the current
logits), `feed` (evaluate that token so the next can be sampled). `run` owns everything else
the backends used to write four times: the prefill's stop points, EOS and `ignore_eos`, the
token budget, pending ids, text pieces through a `Detokenizer` and `TextStream` (stop
sequences, `<think>`), and the final chunk's statistics.

Batched evaluation — several tokens of one or more sequences in one model call, logits only
where asked — is the `BatchedStep` ability (`runtime/llamacpp_batch.py` for llama.cpp).
Speculative verification (one sequence, k draft tokens) and continuous batching (several
sequences, one token each) are two uses of it; a backend without it is stepped one token at a
time through `TokenStep`.
"""

from __future__ import annotations

import codecs
import time
from collections.abc import Callable, Container, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from edgeai.errors import BadInput, ContextOverflow
from edgeai.memory import peak_rss_mb
from edgeai.runtime import templates
from edgeai.runtime.base import final_chunk
from edgeai.runtime.textstream import THINK_OPEN, TextStream
from edgeai.types import Chunk, GenParams, Message

if TYPE_CHECKING:
    import numpy as np

# (text, special, add_bos) -> ids: `special` parses control-token text (template output only)
Encode = Callable[[str, bool, bool], list[int]]


# -- the prompt ----------------------------------------------------------------------------
@dataclass(frozen=True)
class PromptPlan:
    """A prompt checked and tokenized, with the room left for the reply."""

    tokens: list[int]
    budget: int  # tokens the reply may take: max_tokens, or less where the window ends
    thinking: bool  # the prompt itself opened a <think> block


class ChatPrompt:
    """Raw text or messages -> the exact tokens a model sees.

    Messages go through the chat template (`templates.render_chat`: the model's own, a checked
    built-in, or the one no-template error). A template that writes the BOS text itself gets no
    second BOS token; control-token text is parsed only in template output, never in a user's
    raw text."""

    def __init__(self, template: str | None, *, model_id: str, bos_text: str, eos_text: str,
                 encode: Encode) -> None:
        self.template = template
        self.model_id = model_id
        self.bos_text = bos_text
        self.eos_text = eos_text
        self._encode = encode

    def render(self, messages: list[Message], tools: Sequence[dict] | None = None) -> str:
        return templates.render_chat(self.template, messages, model_id=self.model_id,
                                     bos_token=self.bos_text, eos_token=self.eos_text, tools=tools)

    def text(self, prompt: str | list[Message], tools: Sequence[dict] | None = None) -> str:
        return self.render(prompt, tools) if isinstance(prompt, list) else prompt

    def tokens(self, prompt: str | list[Message]) -> list[int]:
        return self._tokens(self.text(prompt), isinstance(prompt, list))

    def _tokens(self, text: str, chat: bool) -> list[int]:
        add_bos = not (self.bos_text and text.startswith(self.bos_text))
        return self._encode(text, chat, add_bos)

    def plan(self, prompt: str | list[Message], params: GenParams, n_ctx: int,
             tools: Sequence[dict] | None = None) -> PromptPlan:
        """The checks every `stream()` makes before it returns its generator (so the CLI fails
        before printing): an empty prompt, a prompt the window cannot hold. `tools` (OpenAI's
        function definitions) are given to the chat template."""
        chat = isinstance(prompt, list)
        text = self.text(prompt, tools)
        if not text.strip() or (chat and not any(m.content.strip() for m in prompt)):
            raise BadInput("the prompt is empty")
        tokens = self._tokens(text, chat)
        if len(tokens) >= n_ctx:
            raise ContextOverflow(len(tokens), n_ctx)
        return PromptPlan(tokens, min(params.max_tokens, n_ctx - len(tokens)),
                          text.rstrip().endswith(THINK_OPEN))


# -- token ids -> text pieces ----------------------------------------------------------------
class Detokenizer(Protocol):
    def step(self, token: int) -> str:
        """The text this token adds; "" while a character is still incomplete."""

    def flush(self) -> str:
        """Whatever is still held back (an incomplete character shows as U+FFFD)."""


class ByteDetokenizer:
    """For vocabularies whose pieces are bytes (llama.cpp): an incremental UTF-8 decoder."""

    def __init__(self, piece: Callable[[int], bytes]) -> None:
        self._piece = piece
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def step(self, token: int) -> str:
        return self._decoder.decode(self._piece(token))

    def flush(self) -> str:
        return self._decoder.decode(b"", final=True)


class TextDetokenizer:
    """For tokenizers that decode id lists to text (HF `tokenizers`, transformers): each step
    decodes the new tokens with some already-shown context before them (byte-level BPE and
    SentencePiece spaces both need it) and emits what they added, once it no longer ends in an
    incomplete character."""

    def __init__(self, decode: Callable[[list[int]], str]) -> None:
        self._decode = decode
        self._ids: list[int] = []
        self._prefix = 0  # start of the context decoded with the new tokens
        self._read = 0  # end of what was already shown

    def step(self, token: int) -> str:
        self._ids.append(token)
        shown = self._decode(self._ids[self._prefix:self._read])
        text = self._decode(self._ids[self._prefix:])
        if len(text) <= len(shown) or text.endswith("\ufffd"):
            return ""
        self._prefix, self._read = self._read, len(self._ids)
        return text[len(shown):]

    def flush(self) -> str:
        shown = self._decode(self._ids[self._prefix:self._read])
        text = self._decode(self._ids[self._prefix:])
        self._prefix = self._read = len(self._ids)
        return text[len(shown):] if len(text) > len(shown) else ""


# -- the step a backend supplies, and the loop ---------------------------------------------
class TokenStep(Protocol):
    """One generation's model side."""

    def prefill(self, tokens: list[int]) -> Iterator[None]:
        """Evaluate the prompt (reusing what the cache already holds), yielding between
        evaluation calls: a closed stream abandons the rest. After it, `sample` can run."""

    def sample(self) -> int:
        """The next token, from the logits the last evaluation left."""

    def feed(self, token: int) -> None:
        """Evaluate `token` (append it to the sequence) so the next one can be sampled."""

    def close(self) -> None:
        """The generation is over (finished, stopped or abandoned): settle the cache."""


class Reply:
    """One reply's text side, token by token: EOS and `ignore_eos`, the budget, pending ids, the
    detokenizer and `TextStream` (stop sequences, `<think>`), the final chunk's statistics.
    `run` drives one from a `TokenStep`; the server's batcher drives one per sequence."""

    def __init__(self, plan: PromptPlan, params: GenParams, *, eos: Container[int],
                 detokenizer: Detokenizer) -> None:
        self.plan, self._eos, self._ignore_eos = plan, eos, params.ignore_eos
        self._detokenizer = detokenizer
        self._text = TextStream(params.stop, in_reasoning=plan.thinking)
        self.start = time.perf_counter()
        self.first: float | None = None
        self.last: float | None = None
        self.count = 0
        self.finish = "length"
        self.done = plan.budget <= 0
        self._pending: list[int] = []

    def accept(self, token: int) -> Chunk | None:
        """Take the next sampled token: the text chunk it completes, if any. Afterwards `done`
        says whether the reply ended (EOS, the budget, a stop sequence); a token that ends it
        need not be evaluated."""
        self.last = time.perf_counter()
        self.first = self.first or self.last
        if token in self._eos and not self._ignore_eos:
            self.finish, self.done = "stop", True
            return None
        self.count += 1
        self._pending.append(token)
        self.done = self.count >= self.plan.budget
        answer, reasoning = self._text.feed(self._detokenizer.step(token))
        chunk = None
        if answer or reasoning:
            chunk = Chunk(text=answer, reasoning=reasoning, token_ids=tuple(self._pending))
            self._pending = []
        if self._text.stopped:
            self.finish, self.done = "stop", True
        return chunk

    def final(self, peak_mem: float | None = None, finish: str | None = None) -> Chunk:
        """The last chunk: the text still held back, the finish reason, the timings."""
        answer, reasoning = self._text.feed(self._detokenizer.flush())
        tail = self._text.flush()
        return final_chunk(text=answer + tail[0], reasoning=reasoning + tail[1],
                           token_ids=tuple(self._pending), finish_reason=finish or self.finish,
                           prompt_tokens=len(self.plan.tokens), completion_tokens=self.count,
                           start=self.start, first=self.first, last=self.last, peak_mem_mb=peak_mem)


def run(step: TokenStep, plan: PromptPlan, params: GenParams, *, eos: Container[int],
        detokenizer: Detokenizer, peak_mem: Callable[[], float | None] = peak_rss_mb) -> Iterator[Chunk]:
    """Stream one reply: empty chunks during the prefill (stop points), text chunks as tokens
    decode, then the final chunk with the finish reason and the timings."""
    reply = Reply(plan, params, eos=eos, detokenizer=detokenizer)
    try:
        for _ in step.prefill(plan.tokens):
            yield Chunk()  # a point where a closed stream stops the prefill
        while not reply.done:
            token = step.sample()
            chunk = reply.accept(token)
            if not reply.done:
                step.feed(token)  # before the chunk is shown: the consumer's time overlaps nothing
            if chunk is not None:
                yield chunk
    finally:
        step.close()
    yield reply.final(peak_mem())


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens two sequences share (what a cache can keep for a new prompt)."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def steps(tokens: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    """A prompt in evaluation calls of `size` tokens (the prefill's stop points)."""
    for i in range(0, len(tokens), size):
        yield tokens[i:i + size]


# -- batched evaluation (an optional ability) -----------------------------------------------
@dataclass(frozen=True)
class SeqInput:
    """Tokens to append to one sequence, and which of them to return logits for (indices into
    `tokens`; negative counts from the end)."""

    seq: int
    tokens: Sequence[int]
    logits_at: Sequence[int] = (-1,)


class SeqSampler(Protocol):
    """One sequence's sampler: penalties and grammar see only that sequence's tokens."""

    def sample_row(self, row: np.ndarray) -> int: ...


@runtime_checkable
class BatchedStep(Protocol):
    """Several tokens of one or more sequences evaluated in one model call, logits returned only
    at the positions asked for. Each sequence keeps its own cache positions in one context."""

    n_seq: int  # sequence ids 0 .. n_seq-1
    prefill_step: int  # prompt tokens per evaluation call in `stream`'s prefill

    def evaluate(self, inputs: Sequence[SeqInput]) -> list[np.ndarray]:
        """Append each input's tokens to its sequence (one input per sequence); one
        (len(logits_at) x vocab) float32 array per input, in order, its rows in position order."""

    def seq_length(self, seq: int) -> int:
        """How many positions the sequence holds."""

    def truncate(self, seq: int, length: int) -> None:
        """Keep the sequence's first `length` positions (drop rejected drafts, free a slot)."""

    def sampler(self, params: GenParams, seed: int | None = None) -> SeqSampler: ...

    def is_end(self, token: int) -> bool: ...

    def plan(self, prompt: str | list[Message], params: GenParams, n_ctx: int | None = None,
             tools: Sequence[dict] | None = None) -> PromptPlan:
        """The prompt as tokens, checked against a window of `n_ctx` (a sequence's share)."""

    def detokenizer(self) -> Detokenizer: ...

    end_tokens: Container[int]  # `token in end_tokens`: end of generation


def generate_together(backend, prompts: Sequence[str | list[Message]], params: GenParams) -> list[list[int]]:
    """The token ids of each prompt's reply, decoded together as one sequence each (one token
    per sequence per model call) where the backend has the batched step and enough sequences,
    else one prompt after another through `stream`.

    Each prompt is evaluated on its own, in the calls `stream`'s prefill makes (so its first
    token is the one `stream` would sample); the replies then advance together."""
    if not (isinstance(backend, BatchedStep) and len(prompts) <= backend.n_seq):
        return [[t for chunk in backend.stream(p, params) for t in chunk.token_ids] for p in prompts]
    seqs = range(len(prompts))
    samplers = [backend.sampler(params, params.seed) for _ in seqs]
    inputs = []
    for seq, prompt in enumerate(prompts):
        backend.truncate(seq, 0)
        for part in steps(backend.prompt_tokens(prompt), backend.prefill_step):
            rows = backend.evaluate([SeqInput(seq, part)])
        inputs.append(SeqInput(seq, [samplers[seq].sample_row(rows[0][0])]))
    out: list[list[int]] = [[] for _ in seqs]
    while inputs:
        live = []
        for item in inputs:
            token = item.tokens[0]
            if (backend.is_end(token) and not params.ignore_eos) or len(out[item.seq]) >= params.max_tokens:
                continue
            out[item.seq].append(token)
            if len(out[item.seq]) < params.max_tokens:
                live.append(item)
        rows = backend.evaluate(live) if live else []
        inputs = [SeqInput(item.seq, [samplers[item.seq].sample_row(row[0])])
                  for item, row in zip(live, rows, strict=True)]
    return out
