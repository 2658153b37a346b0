"""The `llamacpp` backend: GGUF models through llama-cpp-python.

Owns one `Llama` object. Prompts go through our own chat-template rendering and our own
prefill, evaluated in small steps so a closed stream abandons a long prompt within one step.
The KV cache is kept between calls: a follow-up turn evaluates only the tokens after the
longest common prefix with what the cache already holds.
"""

from __future__ import annotations

import codecs
import json
import random
import time
from collections.abc import Iterator
from pathlib import Path

from edgeai.config import default_threads
from edgeai.errors import BadInput, ContextOverflow, EdgeAIError, ModelFormatError
from edgeai.gguf_info import read_header
from edgeai.memory import peak_rss_mb
from edgeai.runtime import templates
from edgeai.runtime.base import final_chunk
from edgeai.runtime.llamacpp_build import amx_guard, import_llama_cpp, supports_gpu_offload
from edgeai.runtime.textstream import THINK_OPEN, TextStream
from edgeai.types import Capabilities, Chunk, GenParams, LoadOptions, Message, ModelSpec

# Prompt tokens per decode call. Small enough that a closed stream (Esc, Ctrl-C) waits at most
# one step (~1 s on one slow core); large enough that prefill speed is unchanged on a CPU
# (measured). A GPU may want more: `n_batch` in the config (`edgeai doctor --tune` measures it).
PREFILL_STEP = 128


class LlamaCppBackend:
    name = "llamacpp"

    def __init__(self) -> None:
        self._llm = None
        self._template: str | None = None
        self._bos_text = ""
        self._eos_text = ""
        self.spec: ModelSpec | None = None
        self._step = PREFILL_STEP
        self.gpu_layers: int | None = None
        self.capabilities = Capabilities(chat_template=False, grammar=True, logits=True)

    # -- loading -------------------------------------------------------------------------
    def load(self, spec: ModelSpec, opts: LoadOptions) -> None:
        path = spec.artifact("gguf")
        if path is None:
            raise BadInput(f"model {spec.id} has no GGUF artifact for the llamacpp backend")
        path = Path(path)
        if not path.is_file():
            raise BadInput(f"model file does not exist: {path}")
        header = read_header(path)  # a clear error for non-GGUF or truncated files
        llama_cpp = import_llama_cpp()
        offload = supports_gpu_offload(llama_cpp)
        gpu_layers = opts.gpu_layers if opts.gpu_layers is not None else (-1 if offload else 0)
        threads = opts.n_threads or default_threads()
        with amx_guard(llama_cpp):
            try:
                self._llm = llama_cpp.Llama(
                    model_path=str(path), n_ctx=opts.n_ctx, n_batch=opts.n_batch,
                    n_threads=threads, n_threads_batch=threads, n_gpu_layers=gpu_layers,
                    verbose=False)
            except (ValueError, RuntimeError) as exc:
                raise ModelFormatError(f"llama.cpp could not load {path.name}: {exc}") from None
        self.spec = spec
        self.gpu_layers = gpu_layers  # what was offloaded (-1: all), for the bench's records
        self._step = opts.prefill_step or PREFILL_STEP
        self._bos_text = self._token_text(self._llm.token_bos())
        self._eos_text = self._token_text(self._llm.token_eos())
        self._template = templates.choose_template(opts.chat_template or spec.chat_template,
                                                   header.get("tokenizer.chat_template"), header.architecture,
                                                   self._is_single_token)
        if self._template is not None:
            templates.prepare(self._template)
        self.capabilities = Capabilities(chat_template=self._template is not None, grammar=True,
                                         logits=True, context_length=self._llm.n_ctx())

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self._llm.detokenize([token], special=True).decode("utf-8", errors="replace")

    def _is_single_token(self, text: str) -> bool:
        return len(self._llm.tokenize(text.encode(), add_bos=False, special=True)) == 1

    def close(self) -> None:
        if self._llm is not None:
            self._llm.close()
            self._llm = None

    def _require(self):
        if self._llm is None:
            raise EdgeAIError("the llamacpp backend has no model loaded")
        return self._llm

    # -- text <-> tokens -----------------------------------------------------------------
    def tokenize(self, text: str) -> list[int]:
        return self._require().tokenize(text.encode("utf-8"), add_bos=False, special=False)

    def detokenize(self, ids: list[int]) -> str:
        return self._require().detokenize(list(ids)).decode("utf-8", errors="replace")

    def render(self, messages: list[Message]) -> str:
        return templates.render_chat(self._template, messages, model_id=self.spec.id if self.spec else "",
                                     bos_token=self._bos_text, eos_token=self._eos_text)

    def prompt_tokens(self, prompt: str | list[Message]) -> list[int]:
        """The exact tokens a prompt (raw text, or messages through the template) becomes."""
        chat = isinstance(prompt, list)
        return self._encode(self.render(prompt) if chat else prompt, chat)

    def _encode(self, text: str, chat: bool) -> list[int]:
        # A template that writes the BOS text itself must not get a second BOS token; control
        # tokens are parsed only in template output, never in a user's raw text.
        add_bos = not (self._bos_text and text.startswith(self._bos_text))
        return self._require().tokenize(text.encode("utf-8"), add_bos=add_bos, special=chat)

    # -- generation ----------------------------------------------------------------------
    def stream(self, prompt: str | list[Message], params: GenParams) -> Iterator[Chunk]:
        llm = self._require()
        chat = isinstance(prompt, list)
        text = self.render(prompt) if chat else prompt
        if not text.strip() or (chat and not any(m.content.strip() for m in prompt)):
            raise BadInput("the prompt is empty")
        tokens = self._encode(text, chat)
        n_ctx = llm.n_ctx()
        if len(tokens) >= n_ctx:
            raise ContextOverflow(len(tokens), n_ctx)
        grammar = _grammar(params.response_format)
        budget = min(params.max_tokens, n_ctx - len(tokens))
        thinking = text.rstrip().endswith(THINK_OPEN)
        return self._run(tokens, params, budget, grammar, thinking)

    def _prefill(self, tokens: list[int]) -> Iterator[Chunk]:
        """Evaluate the prompt, reusing the cached common prefix; at least the last token is
        evaluated so the logits to sample from are fresh. `Llama.generate` then finds the whole
        prompt cached and samples at once (no extra one-token decode)."""
        llm = self._require()
        cached = llm.longest_token_prefix(llm._input_ids.tolist(), tokens) if llm.n_tokens else 0
        keep = min(cached, len(tokens) - 1)
        if keep < llm.n_tokens:
            if keep > 0 and llm._ctx.kv_cache_seq_rm(-1, keep, -1):
                llm.n_tokens = keep
            else:  # partial removal unsupported (recurrent memory): start over
                llm.reset()
                llm._ctx.kv_cache_seq_rm(-1, 0, -1)
                keep = 0
        todo = tokens[keep:]
        for i in range(0, len(todo), self._step):
            llm.eval(todo[i:i + self._step])
            yield Chunk()  # a point where a closed stream stops the prefill

    def _run(self, tokens: list[int], params: GenParams, budget: int, grammar,
             thinking: bool) -> Iterator[Chunk]:
        import llama_cpp

        llm = self._require()
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        start = time.perf_counter()
        yield from self._prefill(tokens)
        llm.set_seed(params.seed if params.seed is not None else random.randrange(2**31))
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        text = TextStream(params.stop, in_reasoning=thinking)
        first = last = None
        count, pending, finish = 0, [], "length"
        tokens_out = llm.generate(
            tokens, top_k=params.top_k, top_p=params.top_p, min_p=params.min_p,
            temp=params.temperature, repeat_penalty=params.repeat_penalty,
            frequency_penalty=params.frequency_penalty,
            presence_penalty=params.presence_penalty, grammar=grammar, reset=True)
        try:
            for token in tokens_out:
                last = time.perf_counter()
                first = first or last
                if not params.ignore_eos and llama_cpp.llama_vocab_is_eog(vocab, token):
                    finish = "stop"
                    break
                count += 1
                pending.append(token)
                answer, reasoning = text.feed(decoder.decode(llm.detokenize([token])))
                if answer or reasoning:
                    yield Chunk(text=answer, reasoning=reasoning, token_ids=tuple(pending))
                    pending = []
                if text.stopped:
                    finish = "stop"
                    break
                if count >= budget:
                    break
        finally:
            tokens_out.close()
        answer, reasoning = text.feed(decoder.decode(b"", final=True))
        tail = text.flush()
        yield final_chunk(
            text=answer + tail[0], reasoning=reasoning + tail[1], token_ids=tuple(pending),
            finish_reason=finish, prompt_tokens=len(tokens), completion_tokens=count,
            start=start, first=first, last=last, peak_mem_mb=peak_rss_mb())

    # -- KV state on disk (instant resume of a conversation) ------------------------------
    def save_state(self, path: Path) -> int:
        """Save the KV cache (what the last prompts computed) to `path`; return its size."""
        from edgeai.runtime.llamacpp_state import model_identity, save_kv

        return save_kv(self._require(), path, model_identity(self.spec.artifact("gguf")))

    def restore_state(self, path: Path) -> int:
        """Load a cache saved for this same model; return the number of tokens restored."""
        from edgeai.runtime.llamacpp_state import load_kv, model_identity

        return load_kv(self._require(), path, model_identity(self.spec.artifact("gguf")))

    # -- logits (validation, perplexity) -------------------------------------------------
    def logits(self, ids: list[int]):
        """Logits for every position of `ids` (shape len(ids) × vocab), from a clean cache."""
        import numpy as np

        llm = self._require()
        if len(ids) > llm.n_ctx():
            raise ContextOverflow(len(ids), llm.n_ctx())
        n_vocab = llm.n_vocab()
        out = np.empty((len(ids), n_vocab), dtype=np.float32)
        llm.reset()
        llm._ctx.kv_cache_seq_rm(-1, 0, -1)
        try:
            for i in range(0, len(ids), llm.n_batch):
                batch = list(ids[i:i + llm.n_batch])
                llm._batch.set_batch(batch=batch, n_past=i, logits_all=True)
                llm._ctx.decode(llm._batch)
                rows = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(len(batch) * n_vocab,))
                out[i:i + len(batch)] = rows.reshape(len(batch), n_vocab)
        finally:
            llm.reset()  # the cache no longer matches any prompt we know of
        return out


def _grammar(schema):
    """A llama.cpp grammar that forces output to match a JSON schema, or None."""
    if schema is None:
        return None
    from llama_cpp import LlamaGrammar

    try:
        return LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
    except Exception as exc:  # the converter raises bare Exceptions/ValueErrors/KeyErrors
        raise BadInput(f"the JSON schema cannot be turned into a grammar: {exc}") from None
