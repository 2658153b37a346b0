"""The `mlx` backend: MLX model folders (what `edgeai convert --to mlx` writes) through mlx-lm.

Owns one model and its tokenizer as `mlx_lm.load` returns them. Prompts go through our own
chat-template rendering (the model's own template, else a checked built-in) and our own prefill
in small steps, so a closed stream abandons a long prompt within one step; mlx-lm's
`generate_step` with its sampler and logits processors then decodes. The KV cache is kept
between calls: a follow-up turn evaluates only the tokens after the common prefix. MLX picks
Metal on Apple Silicon by itself; elsewhere it runs on the CPU (slowly on Linux), where a
quantized model's layers are dequantized at load: MLX's CPU kernels for quantized matmuls with
16-bit scales are ~40x slower than a dense matmul (the 0.5B 8-bit: 75 s against 1.8 s for a
4-token forward, 18 s per generated token), while Metal and CUDA keep the quantized kernels.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from pathlib import Path

from edgeai.errors import BadInput, ContextOverflow, EdgeAIError, MissingExtra, ModelFormatError
from edgeai.memory import peak_rss_mb
from edgeai.runtime import templates
from edgeai.runtime.base import final_chunk
from edgeai.runtime.textstream import THINK_OPEN, TextStream
from edgeai.types import Capabilities, Chunk, GenParams, LoadOptions, Message, ModelSpec

# Prompt tokens per model call during a prefill: a closed stream waits at most one step (on a
# Linux CPU ~0.5-1 s per token of a 0.5B model, so small; Metal barely notices the split).
PREFILL_STEP = 128
# logits() keeps its last result this long, so validation's greedy loop adds one token a call
MEMO_TOKENS = 512
# end-of-turn markers that end a reply wherever the vocabulary has them (llama.cpp's EOG set)
END_MARKERS = ("<|im_end|>", "<|endoftext|>", "<end_of_turn>", "<|eot_id|>", "<|end|>", "<|eom_id|>")
PENALTY_CONTEXT = 64  # prompt tokens the repeat/presence/frequency penalties look back at


def _import_mlx_lm():
    try:
        import mlx.core  # noqa: F401
        import mlx_lm
    except ImportError as exc:
        raise MissingExtra(f"MLX (mlx, mlx-lm) [{exc}]", "pip install 'edgeai[mlx]'") from None
    return mlx_lm


def on_cpu() -> bool:
    """Whether MLX computes on the CPU here (no Metal, no CUDA)."""
    import mlx.core as mx

    return mx.default_device().type != mx.DeviceType.gpu


def is_quantized(model) -> bool:
    import mlx.nn as nn

    return any(isinstance(m, (nn.QuantizedLinear, nn.QuantizedEmbedding)) for _, m in model.named_modules())


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def new_text(decode, ids: list[int], prefix: int, read: int) -> tuple[str, int, int]:
    """Text the last tokens added, decoded in the context of the tokens before them (byte-level
    and SentencePiece pieces both need it); nothing while a UTF-8 character is still partial."""
    before = decode(ids[prefix:read])
    text = decode(ids[prefix:])
    if len(text) > len(before) and not text.endswith("\ufffd"):
        return text[len(before):], read, len(ids)
    return "", prefix, read


def rest_text(decode, ids: list[int], prefix: int, read: int) -> str:
    """What `new_text` held back when the stream ended (a partial character, shown as is)."""
    return decode(ids[prefix:])[len(decode(ids[prefix:read])):] if len(ids) > read else ""


class MlxBackend:
    name = "mlx"

    def __init__(self) -> None:
        self._model = None
        self._tok = None  # mlx-lm's TokenizerWrapper
        self._hf = None  # the transformers tokenizer inside it
        self._template: str | None = None
        self._bos_text = ""
        self._eos_text = ""
        self._eos_ids: set[int] = set()
        self._n_ctx = 0
        self._step = PREFILL_STEP
        self._cache = None  # KV cache of the last stream and the tokens it holds
        self._cached: list[int] = []
        self._memo = None  # (ids, logits rows, cache) of the last logits() call
        self.spec: ModelSpec | None = None
        self.dequantized = False  # quantized layers made dense at load (on a CPU)
        self.capabilities = Capabilities(chat_template=False, grammar=False, logits=True)

    # -- loading -------------------------------------------------------------------------
    def load(self, spec: ModelSpec, opts: LoadOptions) -> None:
        path = spec.artifact("mlx")
        if path is None:
            raise BadInput(f"model {spec.id} has no MLX artifact for the mlx backend")
        path = Path(path)
        if not (path / "config.json").is_file():
            raise BadInput(f"{path} is not an MLX model folder (no config.json)",
                           "convert a model with: edgeai convert SRC --to mlx -o OUT")
        mlx_lm = _import_mlx_lm()
        try:
            self._model, self._tok = mlx_lm.load(str(path))
        except (ValueError, FileNotFoundError, KeyError, OSError) as exc:
            raise ModelFormatError(f"mlx-lm could not load {path.name}: {exc}") from None
        self.dequantized = on_cpu() and is_quantized(self._model)
        if self.dequantized:  # see the module docstring: the CPU's quantized kernels crawl
            from mlx_lm.utils import dequantize_model

            self._model = dequantize_model(self._model)
        self._hf = self._tok._tokenizer
        self.spec = spec
        self._n_ctx = opts.n_ctx
        self._step = opts.prefill_step or PREFILL_STEP
        self._bos_text = self._hf.bos_token or ""
        self._eos_text = self._hf.eos_token or ""
        self._eos_ids = set(self._tok.eos_token_ids) | self._end_markers() | _generation_eos(path)
        model_type = json.loads((path / "config.json").read_text(encoding="utf-8")).get("model_type", "")
        chosen = opts.chat_template or spec.chat_template
        self._template = templates.choose_template(chosen, self._tok.chat_template, model_type,
                                                   lambda t: self._single_token(t) is not None)
        if self._template is not None:
            templates.prepare(self._template)
        self.capabilities = Capabilities(chat_template=self._template is not None, grammar=False,
                                         logits=True, context_length=opts.n_ctx)

    def _single_token(self, text: str) -> int | None:
        ids = self._hf.encode(text, add_special_tokens=False)
        return ids[0] if len(ids) == 1 else None

    def _end_markers(self) -> set[int]:
        vocab = self._hf.get_vocab()
        found = (self._single_token(marker) for marker in END_MARKERS if marker in vocab)
        return {i for i in found if i is not None}

    def close(self) -> None:
        self._model = self._tok = self._hf = self._cache = self._memo = None
        self._cached = []

    def _require(self):
        if self._model is None:
            raise EdgeAIError("the mlx backend has no model loaded")
        return self._model

    # -- text <-> tokens -----------------------------------------------------------------
    def tokenize(self, text: str) -> list[int]:
        self._require()
        return list(self._hf.encode(text, add_special_tokens=False, split_special_tokens=True))

    def detokenize(self, ids: list[int]) -> str:
        self._require()
        return self._decode(list(ids))

    def _decode(self, ids: list[int]) -> str:
        return self._hf.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def render(self, messages: list[Message]) -> str:
        return templates.render_chat(self._template, messages, model_id=self.spec.id if self.spec else "",
                                     bos_token=self._bos_text, eos_token=self._eos_text)

    def prompt_tokens(self, prompt: str | list[Message]) -> list[int]:
        """The exact tokens a prompt (raw text, or messages through the template) becomes;
        for raw text, what the model's own tokenizer gives (BOS included where it adds one)."""
        chat = isinstance(prompt, list)
        return self._encode(self.render(prompt) if chat else prompt, chat)

    def _encode(self, text: str, chat: bool) -> list[int]:
        # A template that writes the BOS text itself must not get a second BOS; control tokens
        # are parsed only in template output, never in a user's raw text.
        add_special = not (self._bos_text and text.startswith(self._bos_text))
        self._require()
        return list(self._hf.encode(text, add_special_tokens=add_special, split_special_tokens=not chat))

    # -- generation ----------------------------------------------------------------------
    def stream(self, prompt: str | list[Message], params: GenParams) -> Iterator[Chunk]:
        self._require()
        if params.response_format is not None:
            raise BadInput("the mlx backend cannot constrain output to a JSON schema",
                           "use a GGUF model (llamacpp backend) for --json-schema")
        chat = isinstance(prompt, list)
        text = self.render(prompt) if chat else prompt
        if not text.strip() or (chat and not any(m.content.strip() for m in prompt)):
            raise BadInput("the prompt is empty")
        tokens = self._encode(text, chat)
        if len(tokens) >= self._n_ctx:
            raise ContextOverflow(len(tokens), self._n_ctx)
        budget = min(params.max_tokens, self._n_ctx - len(tokens))
        thinking = text.rstrip().endswith(THINK_OPEN)
        return self._run(tokens, params, budget, thinking)

    def _reuse_cache(self, tokens: list[int]) -> list[int]:
        """Keep the cached common prefix (trimming the rest) and return the tokens still to
        evaluate; at least the last one, so the logits to sample from are fresh."""
        from mlx_lm.models.cache import can_trim_prompt_cache, make_prompt_cache, trim_prompt_cache

        keep = min(common_prefix(self._cached, tokens), len(tokens) - 1)
        if self._cache is not None and keep > 0 and _offset(self._cache) == len(self._cached):
            extra = len(self._cached) - keep
            if extra == 0 or (can_trim_prompt_cache(self._cache)
                              and trim_prompt_cache(self._cache, extra) == extra):
                self._cached = self._cached[:keep]
                return tokens[keep:]
        self._cache = make_prompt_cache(self._require())  # a sliding window that wrapped: start over
        self._cached = []
        return tokens

    def _prefill(self, todo: list[int]) -> Iterator[Chunk]:
        import mlx.core as mx

        model = self._require()
        for i in range(0, len(todo), self._step):
            piece = todo[i:i + self._step]
            model(mx.array(piece)[None], cache=self._cache)
            mx.eval([c.state for c in self._cache])
            self._cached.extend(piece)
            yield Chunk()  # a point where a closed stream stops the prefill

    def _sampling(self, params: GenParams, tokens: list[int]):
        import mlx.core as mx
        from mlx_lm.sample_utils import make_logits_processors, make_sampler

        mx.random.seed(params.seed if params.seed is not None else random.randrange(2**31))
        sampler = make_sampler(temp=max(params.temperature, 0.0), top_p=params.top_p,
                               min_p=params.min_p, top_k=params.top_k)
        processors = make_logits_processors(
            repetition_penalty=params.repeat_penalty if params.repeat_penalty != 1.0 else None,
            presence_penalty=params.presence_penalty or None,
            frequency_penalty=params.frequency_penalty or None)
        if not processors or len(tokens) < 2:
            return sampler, processors
        # generate_step sees only the tokens it is given (the last prompt token): hand the
        # penalties the prompt's tail as well, as llama.cpp's do
        context = mx.array(tokens[:-1][-PENALTY_CONTEXT:])
        return sampler, [lambda seen, logits, p=p: p(mx.concatenate([context, seen]), logits)
                         for p in processors]

    def _run(self, tokens: list[int], params: GenParams, budget: int, thinking: bool) -> Iterator[Chunk]:
        import mlx.core as mx
        from mlx_lm.generate import generate_step

        model = self._require()
        start = time.perf_counter()
        todo = self._reuse_cache(tokens)
        yield from self._prefill(todo[:-1])
        sampler, processors = self._sampling(params, tokens)
        text = TextStream(params.stop, in_reasoning=thinking)
        out: list[int] = []  # every token generate_step yielded (each was fed to the cache)
        prefix = read = 0
        first = last = None
        count, pending, finish = 0, [], "length"
        steps = generate_step(mx.array(todo[-1:]), model, max_tokens=budget, sampler=sampler,
                              logits_processors=processors, prompt_cache=self._cache)
        try:
            for token, _ in steps:
                last = time.perf_counter()
                first = first or last
                out.append(token)
                if not params.ignore_eos and token in self._eos_ids:
                    finish = "stop"
                    break
                count += 1
                pending.append(token)
                piece, prefix, read = new_text(self._decode, out, prefix, read)
                answer, reasoning = text.feed(piece)
                if answer or reasoning:
                    yield Chunk(text=answer, reasoning=reasoning, token_ids=tuple(pending))
                    pending = []
                if text.stopped:
                    finish = "stop"
                    break
                if count >= budget:
                    break
        finally:
            steps.close()
            self._after_generation(todo[-1:] + out)
        answer, reasoning = text.feed(rest_text(self._decode, out[:count], prefix, read))
        rest = text.flush()
        yield final_chunk(
            text=answer + rest[0], reasoning=reasoning + rest[1], token_ids=tuple(pending),
            finish_reason=finish, prompt_tokens=len(tokens), completion_tokens=count,
            start=start, first=first, last=last, peak_mem_mb=_peak_mb())

    def _after_generation(self, fed: list[int]) -> None:
        """Record what the cache holds now: the cached prefix plus what generate_step fed it."""
        offset = _offset(self._cache)
        known = self._cached + fed
        if offset is not None and offset <= len(known):
            self._cached = known[:offset]
        else:  # not a cache we can account for: the next prompt starts from scratch
            self._cache, self._cached = None, []

    # -- logits (validation, perplexity) -------------------------------------------------
    def logits(self, ids: list[int]):
        """Logits for every position of `ids` (len(ids) × vocab, float32). A call that extends
        the previous one evaluates only the new tokens, on the previous call's cache."""
        import mlx.core as mx
        import numpy as np
        from mlx_lm.models.cache import make_prompt_cache

        model = self._require()
        ids = list(ids)
        if not ids:
            raise BadInput("logits need at least one token")
        if len(ids) > self._n_ctx:
            raise ContextOverflow(len(ids), self._n_ctx)
        if self._memo and self._memo[0] == ids[:len(self._memo[0])] and len(ids) >= len(self._memo[0]):
            done, rows, cache = self._memo
        else:
            done, rows, cache = [], np.empty((0, 0), np.float32), make_prompt_cache(model)
        parts = [rows] if len(done) else []
        for i in range(len(done), len(ids), self._step * 4):
            out = model(mx.array(ids[i:i + self._step * 4])[None], cache=cache)
            parts.append(np.array(out[0].astype(mx.float32)))
        result = np.concatenate(parts) if len(parts) > 1 else parts[0]
        self._memo = (ids, result, cache) if len(ids) <= MEMO_TOKENS else None
        return result


def _offset(cache) -> int | None:
    """How many tokens a prompt cache holds (None: a cache type that does not say)."""
    offsets = {getattr(c, "offset", None) for c in cache}
    return offsets.pop() if len(offsets) == 1 and isinstance(next(iter(offsets)), int) else None


def _peak_mb() -> float | None:
    """The process's peak RSS, or MLX's own peak allocation where it is larger (Metal buffers
    are not all counted in RSS)."""
    import mlx.core as mx

    mlx_peak = mx.get_peak_memory() / 2**20
    return max(peak_rss_mb() or 0.0, mlx_peak) or None


def _generation_eos(folder: Path) -> set[int]:
    """generation_config.json's eos_token_id (an int or a list): instruct models list their
    end-of-turn token there."""
    try:
        eos = json.loads((folder / "generation_config.json").read_text(encoding="utf-8")).get("eos_token_id")
    except (OSError, ValueError, AttributeError):
        return set()
    if isinstance(eos, int):
        return {eos}
    return {int(e) for e in eos} if isinstance(eos, list) else set()
