"""The `mlx` backend: MLX model folders (what `edgeai convert --to mlx` writes) through mlx-lm.

Load + step: one model and its tokenizer as `mlx_lm.load` returns them (with a fine-tuned
adapter applied where `LoadOptions.adapter_path` names one: `edgeai run --adapter OUT`), prompts through
`decode.ChatPrompt` (the model's own template, else a checked built-in), and a `TokenStep` the
shared loop (`decode.run`) drives: the prefill in small steps (a closed stream abandons a long
prompt within one step), then mlx-lm's model call, logits processors and sampler, with the next
step queued before the current token is read (as mlx-lm's `generate_step` pipelines it). The
KV cache is kept between calls: a follow-up turn evaluates only the tokens after the common
prefix. MLX picks
Metal on Apple Silicon by itself; elsewhere it runs on the CPU (slowly on Linux), where a
quantized model's layers are dequantized at load: MLX's CPU kernels for quantized matmuls with
16-bit scales are ~40x slower than a dense matmul (the 0.5B 8-bit: 75 s against 1.8 s for a
4-token forward, 18 s per generated token), while Metal and CUDA keep the quantized kernels.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

from edgeai.errors import BadInput, ContextOverflow, EdgeAIError, MissingExtra, ModelFormatError
from edgeai.memory import peak_rss_mb
from edgeai.runtime import templates
from edgeai.runtime.decode import ChatPrompt, TextDetokenizer, common_prefix, run, steps
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


class MlxBackend:
    name = "mlx"

    def __init__(self) -> None:
        self._model = None
        self._tok = None  # mlx-lm's TokenizerWrapper
        self._hf = None  # the transformers tokenizer inside it
        self._prompt: ChatPrompt | None = None
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
        adapter = opts.adapter_path
        try:  # an adapter's LoRA/DoRA layers stay unfused, as `mlx_lm.generate --adapter-path` runs them
            self._model, self._tok = mlx_lm.load(str(path), adapter_path=adapter)
        except (ValueError, FileNotFoundError, KeyError, OSError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]  # mlx-lm lists every tensor
            with_adapter = f" with the adapter {adapter}" if adapter else ""
            raise ModelFormatError(f"mlx-lm could not load {path.name}{with_adapter}: {first}") from None
        self.dequantized = on_cpu() and is_quantized(self._model)
        if self.dequantized:  # see the module docstring: the CPU's quantized kernels crawl
            from mlx_lm.utils import dequantize_model

            self._model = dequantize_model(self._model)
        self._hf = self._tok._tokenizer
        self.spec = spec
        self._n_ctx = opts.n_ctx
        self._step = opts.prefill_step or PREFILL_STEP
        self._eos_ids = set(self._tok.eos_token_ids) | self._end_markers() | _generation_eos(path)
        model_type = json.loads((path / "config.json").read_text(encoding="utf-8")).get("model_type", "")
        chosen = opts.chat_template or spec.chat_template
        template = templates.choose_template(chosen, self._tok.chat_template, model_type,
                                             lambda t: self._single_token(t) is not None)
        if template is not None:
            templates.prepare(template)
        self._prompt = ChatPrompt(template, model_id=spec.id, bos_text=self._hf.bos_token or "",
                                  eos_text=self._hf.eos_token or "", encode=self._encode)
        self.capabilities = Capabilities(chat_template=template is not None, grammar=False,
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

    def _encode(self, text: str, special: bool, add_bos: bool) -> list[int]:
        self._require()
        return list(self._hf.encode(text, add_special_tokens=add_bos, split_special_tokens=not special))

    def render(self, messages: list[Message]) -> str:
        self._require()
        return self._prompt.render(messages)

    def prompt_tokens(self, prompt: str | list[Message]) -> list[int]:
        """The exact tokens a prompt (raw text, or messages through the template) becomes;
        for raw text, what the model's own tokenizer gives (BOS included where it adds one)."""
        self._require()
        return self._prompt.tokens(prompt)

    # -- generation ----------------------------------------------------------------------
    def stream(self, prompt: str | list[Message], params: GenParams) -> Iterator[Chunk]:
        self._require()
        if params.response_format is not None:
            raise BadInput("the mlx backend cannot constrain output to a JSON schema",
                           "use a GGUF model (llamacpp backend) for --json-schema")
        plan = self._prompt.plan(prompt, params, self._n_ctx)
        return run(_MlxStep(self, params, plan.budget), plan, params, eos=self._eos_ids,
                   detokenizer=TextDetokenizer(self._decode), peak_mem=_peak_mb)

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
        # the step's processors see only what it fed after the prefill (the last prompt token
        # on): hand the penalties the prompt's tail as well
        context = mx.array(tokens[:-1][-PENALTY_CONTEXT:])
        return sampler, [lambda seen, logits, p=p: p(mx.concatenate([context, seen]), logits)
                         for p in processors]

    def _after_generation(self, fed: list[int]) -> None:
        """Record what the cache holds now: the cached prefix plus what the step fed it."""
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


class _MlxStep:
    """The decode loop's step. `sample` queues the model call for the token it is about to
    return before reading it (mlx-lm's pipelining: on a GPU the next forward pass runs while
    this token is turned into text), so `feed` has nothing left to do."""

    def __init__(self, backend: MlxBackend, params: GenParams, budget: int) -> None:
        self._backend, self._params, self._budget = backend, params, budget
        self._sampler = self._processors = None
        self._seen = None  # tokens fed since the prefill (for the logits processors)
        self._fed: list[int] = []  # tokens given to the model after the prefill, as ints
        self._y = None  # the next token, queued
        self._sampled = 0

    def prefill(self, tokens: list[int]) -> Iterator[None]:
        import mlx.core as mx
        from mlx_lm.generate import generation_stream

        backend = self._backend
        model = backend._require()
        todo = backend._reuse_cache(tokens)
        for part in steps(todo[:-1], backend._step):
            with mx.stream(generation_stream):
                model(mx.array(part)[None], cache=backend._cache)
                mx.eval([c.state for c in backend._cache])
            backend._cached.extend(part)
            yield
        self._sampler, self._processors = backend._sampling(self._params, tokens)
        self._y = self._forward(mx.array(todo[-1:]))
        self._fed.append(todo[-1])

    def _forward(self, inputs):
        """Queue one model call on `inputs` (an mx array of token ids): the token after them."""
        import mlx.core as mx
        from mlx_lm.generate import generation_stream

        with mx.stream(generation_stream):
            logits = self._backend._require()(inputs[None], cache=self._backend._cache)[:, -1, :]
            if self._processors:
                self._seen = inputs if self._seen is None else mx.concatenate([self._seen, inputs])
                for processor in self._processors:
                    logits = processor(self._seen, logits)
            y = self._sampler(logits - mx.logsumexp(logits, keepdims=True))
        mx.async_eval(y)
        return y

    def sample(self) -> int:
        import mlx.core as mx

        y = self._y
        self._sampled += 1
        queued = self._sampled < self._budget
        if queued:  # the next position starts computing before this token is read
            self._y = self._forward(y)
        token = y.item()
        if queued:
            self._fed.append(token)
        if self._sampled % 256 == 0:
            mx.clear_cache()
        return token

    def feed(self, token: int) -> None:
        pass  # `sample` already queued it

    def close(self) -> None:
        self._backend._after_generation(self._fed)


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
