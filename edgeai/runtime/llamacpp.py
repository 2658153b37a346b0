"""The `llamacpp` backend: GGUF models through llama.cpp's own API (via llama-cpp-python).

Load + step: the model and one context of `LoadOptions.n_seq` sequences (`llamacpp_batch`),
prompts through `decode.ChatPrompt`, and a `TokenStep` on sequence 0 that the shared loop
(`decode.run`) drives. The prefill runs in small evaluation calls so a closed stream abandons a
long prompt within one step; the KV cache is kept between calls: a follow-up turn evaluates
only the tokens after the longest common prefix with what the sequence already holds. The
context is also the batched step (`decode.BatchedStep`): `evaluate`, `seq_length`, `truncate`.
With a projector (`LoadOptions.mmproj_path`) a conversation with images goes through
`llamacpp_mtmd`: mtmd's chunks, image chunks evaluated into sequence 0 by mtmd, text chunks by
the same step as text (prefix reuse keyed by each image's hash, stop between prefill steps).
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

from edgeai.config import default_threads
from edgeai.errors import BadInput, ContextOverflow, EdgeAIError, ModelFormatError
from edgeai.gguf_info import kv_bytes_per_token, read_header
from edgeai.runtime import templates
from edgeai.runtime.decode import ByteDetokenizer, ChatPrompt, PromptPlan, SeqInput, common_prefix, run, steps
from edgeai.runtime.llamacpp_batch import Sampler, Sequences
from edgeai.runtime.llamacpp_build import import_llama_cpp, model_params, supports_gpu_offload
from edgeai.runtime.llamacpp_mtmd import has_images
from edgeai.runtime.textstream import THINK_OPEN
from edgeai.system import memory_gb
from edgeai.types import Capabilities, Chunk, GenParams, LoadOptions, Message, ModelSpec

# Prompt tokens per decode call. Small enough that a closed stream (Esc, Ctrl-C) waits at most
# one step (~1 s on one slow core); large enough that prefill speed is unchanged on a CPU
# (measured). A GPU may want more: `n_batch` in the config (`edgeai doctor --tune` measures it).
PREFILL_STEP = 128
CHAT_SEQ = 0  # the sequence `stream` generates in


class LlamaCppBackend:
    name = "llamacpp"
    stream_seq = CHAT_SEQ  # the one sequence `stream` uses (a server's batcher keeps count of it)

    def __init__(self) -> None:
        self._lib = None
        self._model = None  # llama-cpp-python's LlamaModel (the weights and the vocabulary)
        self._seqs: Sequences | None = None
        self._projector = None  # llamacpp_mtmd.Projector, when an mmproj is loaded
        self._prompt: ChatPrompt | None = None
        self.spec: ModelSpec | None = None
        self.prefill_step = PREFILL_STEP
        self.gpu_layers: int | None = None
        self.capabilities = Capabilities(chat_template=False, grammar=True, logits=True)
        self.draft = "off"  # speculative decoding: "off", "ngram" or the draft model's id
        self._draft_model = None  # drafts.ModelDrafter, when a draft model is loaded
        self._draft_lengths = (16, 0)  # --draft-max, --draft-min
        self._draft_costs: dict[int, float] = {}  # verify seconds by size, kept across replies
        self._threads = 1

    # -- loading -------------------------------------------------------------------------
    def load(self, spec: ModelSpec, opts: LoadOptions) -> None:
        path = spec.artifact("gguf")
        if path is None:
            raise BadInput(f"model {spec.id} has no GGUF artifact for the llamacpp backend")
        path = Path(path)
        if not path.is_file():
            raise BadInput(f"model file does not exist: {path}")
        header = read_header(path)  # a clear error for non-GGUF or truncated files
        check_context_fits(header, opts.n_ctx)  # before any weights load
        lib = import_llama_cpp(opts.wait_policy)
        from llama_cpp._internals import LlamaModel
        from llama_cpp._logger import set_verbose

        set_verbose(False)  # llama.cpp's load and context logs stay off the user's terminal
        gpu_layers = opts.gpu_layers
        if gpu_layers is None:
            gpu_layers = -1 if supports_gpu_offload(lib) else 0
        try:
            self._model = LlamaModel(path_model=str(path), params=model_params(lib, gpu_layers),
                                     verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise ModelFormatError(f"llama.cpp could not load {path.name}: {exc}") from None
        self._lib = lib
        try:
            self._seqs = Sequences(lib, self._model, n_ctx=opts.n_ctx, n_batch=opts.n_batch,
                                   n_seq=opts.n_seq, threads=opts.n_threads or default_threads())
        except BaseException:
            self.close()  # the weights go now, not whenever the collector finds them
            raise
        self.spec = spec
        self.gpu_layers = gpu_layers  # what was offloaded (-1: all), for the bench's records
        self._threads = opts.n_threads or default_threads()
        self.prefill_step = opts.prefill_step or PREFILL_STEP
        template = templates.choose_template(opts.chat_template or spec.chat_template,
                                             header.get("tokenizer.chat_template"), header.architecture,
                                             self._is_single_token)
        if template is not None:
            templates.prepare(template)
        self._prompt = ChatPrompt(template, model_id=spec.id, encode=self._encode,
                                  bos_text=self._token_text(self._model.token_bos()),
                                  eos_text=self._token_text(self._model.token_eos()))
        self.capabilities = Capabilities(chat_template=template is not None, grammar=True, logits=True,
                                         context_length=self._seqs.n_ctx)
        self.set_draft(opts.draft, opts.draft_path, opts.draft_max, opts.draft_min)
        if opts.mmproj_path:
            from edgeai.runtime.llamacpp_mtmd import Projector

            try:
                self._projector = Projector(lib, self._model, opts.mmproj_path, threads=self._threads,
                                            use_gpu=gpu_layers != 0)
            except BaseException:
                self.close()
                raise
            self.capabilities = replace(self.capabilities, vision=True)

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self._model.detokenize([token], special=True).decode("utf-8", errors="replace")

    def _is_single_token(self, text: str) -> bool:
        return len(self._model.tokenize(text.encode(), add_bos=False, special=True)) == 1

    def close(self) -> None:
        if self._projector is not None:
            self._projector.close()  # before the text model it was loaded against
            self._projector = None
        if self._draft_model is not None:
            self._draft_model.close()
            self._draft_model = None
        if self._seqs is not None:
            self._seqs.close()  # the context goes before its model
            self._seqs = None
        if self._model is not None:
            self._model.close()
            self._model = None

    def _require(self) -> Sequences:
        if self._seqs is None:
            raise EdgeAIError("the llamacpp backend has no model loaded")
        return self._seqs

    # -- text <-> tokens -----------------------------------------------------------------
    def tokenize(self, text: str) -> list[int]:
        self._require()
        return self._model.tokenize(text.encode("utf-8"), add_bos=False, special=False)

    def detokenize(self, ids: list[int]) -> str:
        self._require()
        return self._model.detokenize(list(ids)).decode("utf-8", errors="replace")

    def _encode(self, text: str, special: bool, add_bos: bool) -> list[int]:
        self._require()
        return self._model.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special)

    def render(self, messages: list[Message]) -> str:
        self._require()
        return self._prompt.render(messages)

    def prompt_tokens(self, prompt: str | list[Message]) -> list[int]:
        """The exact tokens a prompt (raw text, or messages through the template) becomes; with
        images on a VLM, one negative id per position an image takes (the count is exact)."""
        self._require()
        if self._projector is not None and has_images(prompt):
            media = self.media_prompt(prompt)
            media.close()
            return media.tokens
        return self._prompt.tokens(prompt)

    # -- generation ----------------------------------------------------------------------
    def stream(self, prompt: str | list[Message], params: GenParams) -> Iterator[Chunk]:
        seqs = self._require()
        if self._projector is not None and has_images(prompt):
            return self._stream_media(seqs, prompt, params)
        plan = self.plan(prompt, params)
        sampler = self.sampler(params, params.seed)
        if self.draft != "off" and params.response_format is None:
            return self._speculate(seqs, plan, params, sampler)
        return run(_ChatStep(seqs, sampler, self.prefill_step), plan, params, eos=self.end_tokens,
                   detokenizer=self.detokenizer())

    def media_prompt(self, messages: list[Message]):
        """Messages with images -> a `llamacpp_mtmd.MediaPrompt` (the caller closes it): the
        template's text with one media marker per image, tokenized by mtmd with the BOS rule of
        `ChatPrompt`."""
        from edgeai.runtime.llamacpp_mtmd import with_markers

        self._require()
        if self._projector is None:
            raise BadInput(f"model {self.spec.id} has no projector loaded: it cannot see images")
        text = self._prompt.render(with_markers(messages, self._projector.marker))
        bos = self._prompt.bos_text
        images = [path for m in messages for path in m.images]
        return self._projector.prompt(text, images, add_special=not (bos and text.startswith(bos)))

    def _stream_media(self, seqs: Sequences, messages: list[Message], params: GenParams) -> Iterator[Chunk]:
        """`stream` for a conversation with images: the same loop and sampler, a step that
        evaluates image chunks through mtmd (no drafting: drafts would have to see the image)."""
        media = self.media_prompt(messages)
        if len(media.tokens) >= seqs.n_ctx:
            media.close()
            raise ContextOverflow(len(media.tokens), seqs.n_ctx)
        plan = PromptPlan(media.tokens, min(params.max_tokens, seqs.n_ctx - len(media.tokens)),
                          media.text.rstrip().endswith(THINK_OPEN))
        step = _MediaStep(seqs, self.sampler(params, params.seed), self.prefill_step, self._projector, media)
        return run(step, plan, params, eos=self.end_tokens, detokenizer=self.detokenizer())

    # -- speculative decoding (runtime/speculative.py) ------------------------------------
    def set_draft(self, draft: str, path: str | None = None, draft_max: int | None = None,
                  draft_min: int | None = None) -> None:
        """Draft with "ngram", a draft model (`path`: its GGUF, checked against this vocabulary),
        or not at all ("off"). The chat's `/draft` switches it between replies."""
        from edgeai.runtime.speculative import check_draft_lengths

        lengths = (draft_max or self._draft_lengths[0],
                   self._draft_lengths[1] if draft_min is None else draft_min)
        check_draft_lengths(*lengths)
        drafter = None
        if draft not in ("off", "ngram"):
            from edgeai.runtime.drafts import load_draft_model

            if not path:
                raise BadInput(f"draft model {draft} has no GGUF file")
            drafter = load_draft_model(self._lib, self._model, path, n_ctx=self._require().n_ctx,
                                       threads=self._threads, target_id=self.spec.id, draft_id=draft)
        if self._draft_model is not None:
            self._draft_model.close()
        self._draft_model, self.draft, self._draft_lengths = drafter, draft, lengths
        self._draft_costs = {}

    def drafter(self):
        """The drafter for one reply: the loaded draft model, else a fresh prompt lookup."""
        from edgeai.runtime.drafts import NgramDrafter

        return self._draft_model or NgramDrafter()

    def draft_policy(self):
        """A reply's draft length policy, with the verify costs measured so far."""
        from edgeai.runtime.speculative import DraftPolicy

        return DraftPolicy(*self._draft_lengths, costs=self._draft_costs)

    def _speculate(self, seqs: Sequences, plan: PromptPlan, params: GenParams, sampler: Sampler):
        from edgeai.runtime.speculative import speculate

        keep = common_prefix(seqs.cached[CHAT_SEQ], plan.tokens[:-1])
        return speculate(self, CHAT_SEQ, plan, params, self.drafter(), policy=self.draft_policy(), keep=keep,
                         eos=self.end_tokens, detokenizer=self.detokenizer(), sampler=sampler,
                         on_close=sampler.close)

    def plan(self, prompt: str | list[Message], params: GenParams, n_ctx: int | None = None,
             tools: Sequence[dict] | None = None) -> PromptPlan:
        """The prompt checked and tokenized for a window of `n_ctx` (default: the context's; a
        server's sequence gets its share). `tools` go to the chat template (OpenAI's shape)."""
        seqs = self._require()
        if self._projector is not None and has_images(prompt):
            # a plan is plain token ids for the batched step and drafting; images need mtmd's
            # chunks, which only `stream` evaluates: a clear refusal, never images dropped
            raise BadInput("images on a llama.cpp VLM are answered one conversation at a time (stream); "
                           "the batched and drafting paths cannot take them yet")
        return self._prompt.plan(prompt, params, n_ctx or seqs.n_ctx, tools=tools)

    def detokenizer(self) -> ByteDetokenizer:
        """A fresh detokenizer for one reply (llama.cpp pieces are bytes)."""
        return ByteDetokenizer(lambda token: self._model.detokenize([token]))

    @property
    def end_tokens(self) -> _EndOfGeneration:
        """`token in backend.end_tokens`: end of generation (EOS, end of turn)."""
        return _EndOfGeneration(self)

    def is_end(self, token: int) -> bool:
        """An end-of-generation token (EOS, end of turn) of this vocabulary."""
        return bool(self._lib.llama_vocab_is_eog(self._model.vocab, token))

    # -- the batched step (decode.BatchedStep) --------------------------------------------
    @property
    def n_seq(self) -> int:
        """Sequences the context holds (`LoadOptions.n_seq`); 0 before a model is loaded."""
        return self._seqs.n_seq if self._seqs is not None else 0

    def evaluate(self, inputs: Sequence[SeqInput]):
        return self._require().evaluate(inputs)

    def seq_length(self, seq: int) -> int:
        return self._require().seq_length(seq)

    def truncate(self, seq: int, length: int) -> None:
        self._require().truncate(seq, length)

    def sampler(self, params: GenParams, seed: int | None = None) -> Sampler:
        """A sampler chain for one sequence of a batched decode."""
        self._require()
        seed = seed if seed is not None else random.randrange(2**31)
        return Sampler(self._lib, self._model, params, seed, _grammar(params.response_format))

    # -- KV state on disk (instant resume of a conversation) ------------------------------
    def save_state(self, path: Path) -> int:
        """Save the chat sequence's KV cache to `path`; return the file's size."""
        from edgeai.runtime.llamacpp_state import save_kv

        seqs = self._require()
        return save_kv(self._lib, seqs.ctx, CHAT_SEQ, seqs.cached[CHAT_SEQ], path, self._identity())

    def restore_state(self, path: Path) -> int:
        """Load a cache saved for this same model; return the number of tokens restored."""
        from edgeai.runtime.llamacpp_state import load_kv

        seqs = self._require()
        seqs.truncate(CHAT_SEQ, 0)
        tokens = load_kv(self._lib, seqs.ctx, CHAT_SEQ, path, self._identity(), seqs.n_ctx)
        seqs.cached[CHAT_SEQ] = tokens
        return len(tokens)

    def _identity(self) -> dict:
        """What a saved cache must match: the model file, and the projector whose embeddings the
        cached image positions hold."""
        from edgeai.runtime.llamacpp_state import model_identity

        identity = model_identity(self.spec.artifact("gguf"))
        if self._projector is not None:
            identity["mmproj"] = model_identity(self._projector.path)
        return identity

    def clear_state(self) -> None:
        """Forget what the chat sequence holds (the next prompt is evaluated from scratch)."""
        self._require().truncate(CHAT_SEQ, 0)

    # -- logits (validation, perplexity) -------------------------------------------------
    def logits(self, ids: list[int]):
        """Logits for every position of `ids` (shape len(ids) × vocab), from a clean sequence."""
        seqs = self._require()
        if len(ids) > seqs.n_ctx:
            raise ContextOverflow(len(ids), seqs.n_ctx)
        seqs.truncate(CHAT_SEQ, 0)
        try:
            return seqs.evaluate([SeqInput(CHAT_SEQ, list(ids), logits_at=range(len(ids)))])[0]
        finally:
            seqs.truncate(CHAT_SEQ, 0)  # nothing a later prompt could reuse by accident


class _EndOfGeneration:
    """`token in eos` for the decode loop, asked of the vocabulary."""

    def __init__(self, backend: LlamaCppBackend) -> None:
        self._is_end = backend.is_end

    def __contains__(self, token: object) -> bool:
        return isinstance(token, int) and self._is_end(token)


class _ChatStep:
    """The decode loop's step on one sequence: prefix reuse, prefill in steps, sample, feed."""

    def __init__(self, seqs: Sequences, sampler: Sampler, prefill_step: int, seq: int = CHAT_SEQ) -> None:
        self._seqs, self._sampler, self._size, self._seq = seqs, sampler, prefill_step, seq

    def prefill(self, tokens: list[int]) -> Iterator[None]:
        """Keep the cached common prefix and evaluate the rest; at least the last token, so the
        logits to sample from are fresh."""
        self._seqs.truncate(self._seq, common_prefix(self._seqs.cached[self._seq], tokens[:-1]))
        keep = self._seqs.seq_length(self._seq)  # 0 where the memory could not drop a tail
        for part in steps(tokens[keep:], self._size):
            self._seqs.append(self._seq, part)
            yield

    def sample(self) -> int:
        return self._sampler.sample(self._seqs)

    def feed(self, token: int) -> None:
        self._seqs.append(self._seq, [token])

    def close(self) -> None:
        self._sampler.close()


class _MediaStep(_ChatStep):
    """`_ChatStep` over a prompt with images: the common prefix never ends inside an image, text
    segments go in prefill steps, each image chunk is one mtmd evaluation (one stop point)."""

    def __init__(self, seqs: Sequences, sampler: Sampler, prefill_step: int, projector, media) -> None:
        super().__init__(seqs, sampler, prefill_step)
        self._projector, self._media = projector, media

    def prefill(self, tokens: list[int]) -> Iterator[None]:
        seqs, seq, media = self._seqs, self._seq, self._media
        seqs.truncate(seq, media.reusable(common_prefix(seqs.cached[seq], tokens[:-1])))
        keep = seqs.seq_length(seq)
        for segment in media.segments:
            if segment.end <= keep:
                continue  # held in the cache already
            if segment.chunk is None:
                for part in steps(tokens[max(keep, segment.start):segment.end], self._size):
                    seqs.append(seq, part)
                    yield
            else:
                try:
                    end = self._projector.eval_image(seqs.ctx, segment.chunk, seqs.seq_length(seq), seq,
                                                     seqs.n_batch)
                finally:
                    seqs.cached[seq].extend(tokens[segment.start:segment.end])
                    if sys.exc_info()[0] is not None:  # a failed image may have left some cells
                        seqs.truncate(seq, segment.start)
                if end != seqs.seq_length(seq):  # positions and the cache's bookkeeping must agree
                    raise EdgeAIError(f"mtmd advanced to position {end}, expected {seqs.seq_length(seq)}")
                yield

    def close(self) -> None:
        super().close()
        self._media.close()


def check_context_fits(header, n_ctx: int, memory=memory_gb) -> None:
    """Refuse a context whose KV cache alone needs more memory than the machine has available,
    saying what it needs and what would fit (llama.cpp would fail with a bare "Failed to create
    llama_context" after trying to allocate it)."""
    per_token = kv_bytes_per_token(header)
    total, available = memory()
    room = (available or total or 0) * 1e9
    if not per_token or not room or n_ctx * per_token <= room:
        return
    fits = int(room * 0.8 / per_token) // 1024 * 1024  # room left for the weights and buffers
    trained = header.get(f"{header.architecture}.context_length")
    raise BadInput(f"a {n_ctx:,}-token context needs {n_ctx * per_token / 1e9:,.1f} GB for its KV cache; "
                   f"this machine has {room / 1e9:.1f} GB available",
                   f"use --ctx {max(fits, 1024)} or less"
                   + (f" (the model was trained with {trained:,})" if trained else ""))


def _grammar(schema):
    """A llama.cpp grammar that forces output to match a JSON schema, or None."""
    if schema is None:
        return None
    from llama_cpp import LlamaGrammar

    try:
        return LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
    except Exception as exc:  # the converter raises bare Exceptions/ValueErrors/KeyErrors
        raise BadInput(f"the JSON schema cannot be turned into a grammar: {exc}") from None

