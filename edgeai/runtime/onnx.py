"""The `onnx` backend: an `edgeai convert --to onnx` folder through onnxruntime-genai.

Owns one `og.Model`. The folder is what onnxruntime-genai's model builder writes:
`genai_config.json`, `model.onnx` (+ `.data`), `tokenizer.json`, `tokenizer_config.json` and
maybe `chat_template.jinja`. Text goes through the exported `tokenizer.json` with the
`tokenizers` library, so ids equal the Hugging Face tokenizer's (BOS included where the model
adds one) and a user's raw text never turns into control tokens. Chat prompts go through
`runtime/templates.py` like every backend. Sampling, the KV cache and JSON-schema guidance
are onnxruntime-genai's own; the prompt is appended in steps so a closed stream abandons it.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from edgeai.config import default_threads
from edgeai.errors import BadInput, ContextOverflow, EdgeAIError, MissingExtra, ModelFormatError
from edgeai.memory import peak_rss_mb
from edgeai.runtime import templates
from edgeai.runtime.base import final_chunk
from edgeai.runtime.model_files import own_template, read_json, token_text
from edgeai.runtime.textstream import THINK_OPEN, TextStream
from edgeai.types import Capabilities, Chunk, GenParams, LoadOptions, Message, ModelSpec

GENAI_CONFIG = "genai_config.json"
# Prompt tokens per append: a closed stream waits at most one step; prefill speed is unchanged.
PREFILL_STEP = 128
# End-of-turn/-text tokens that end a reply wherever the vocabulary has them.
END_TEXTS = ("<|endoftext|>", "<|im_end|>", "<end_of_turn>", "<|eot_id|>", "<|end_of_text|>", "<|end|>",
             "<eos>")
# Tokens per append when computing logits for validation (bounds the logits buffer).
LOGITS_STEP = 512


def import_genai():
    try:
        import onnxruntime_genai as og
    except ImportError:
        raise MissingExtra("onnxruntime-genai", "pip install 'edgeai[onnx]'") from None
    return og


def model_folder(spec: ModelSpec) -> Path:
    path = spec.artifact("onnx")
    if path is None:
        raise BadInput(f"model {spec.id} has no ONNX artifact for the onnx backend")
    path = Path(path)
    if path.is_file() and path.name in (GENAI_CONFIG, "model.onnx"):
        path = path.parent
    if not (path / GENAI_CONFIG).is_file():
        raise BadInput(f"{path} is not an onnxruntime-genai model folder (no {GENAI_CONFIG})",
                       "export one with: edgeai convert SRC --to onnx -o OUT")
    if not (path / "tokenizer.json").is_file():
        raise ModelFormatError(f"{path} has no tokenizer.json", "re-export the model with edgeai convert")
    return path


class OnnxBackend:
    name = "onnx"

    def __init__(self) -> None:
        self._og = None
        self._model = None
        self._tok = None
        self._template: str | None = None
        self._bos_text = ""
        self._eos_text = ""
        self._eos: frozenset[int] = frozenset()
        self._window = 0
        self._limit = 0  # the model's own context length
        self.n_ctx = 0
        self.device = "cpu"
        self.spec: ModelSpec | None = None
        self._step = PREFILL_STEP
        self.capabilities = Capabilities(chat_template=False, grammar=True, logits=True)

    # -- loading -------------------------------------------------------------------------
    def load(self, spec: ModelSpec, opts: LoadOptions) -> None:
        folder = model_folder(spec)
        og = import_genai()
        from tokenizers import Tokenizer

        config = read_json(folder / GENAI_CONFIG).get("model", {})
        threads = opts.n_threads or default_threads()
        try:
            og_config = og.Config(str(folder))
            og_config.overlay(json.dumps({"model": {"decoder": {"session_options": {
                "intra_op_num_threads": threads, "inter_op_num_threads": 1}}}}))
            listed = config.get("decoder", {}).get("session_options", {}).get("provider_options", [])
            self.device = self._choose_device(og, og_config, opts, listed)
            self._model = og.Model(og_config)
            self._tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        except Exception as exc:  # onnxruntime-genai raises bare RuntimeErrors for broken folders
            self._model = None
            raise ModelFormatError(f"onnxruntime-genai could not load {folder.name}: {exc}") from None
        self._og, self.spec = og, spec
        self._limit = int(config.get("context_length") or 0) or opts.n_ctx
        self.n_ctx = min(opts.n_ctx, self._limit)
        self._window = int(config.get("decoder", {}).get("sliding_window", {}).get("window_size") or 0)
        tok_config = read_json(folder / "tokenizer_config.json")
        self._eos = self._end_tokens(config.get("eos_token_id", []), token_text(tok_config.get("eos_token")))
        self._bos_text = token_text(tok_config.get("bos_token"))
        self._eos_text = token_text(tok_config.get("eos_token"))
        self._step = opts.prefill_step or PREFILL_STEP
        chosen = opts.chat_template or spec.chat_template
        self._template = templates.choose_template(chosen, own_template(folder), config.get("type", ""),
                                                   lambda t: self._tok.token_to_id(t) is not None)
        if self._template is not None:
            templates.prepare(self._template)
        self.capabilities = Capabilities(chat_template=self._template is not None, grammar=True,
                                         logits=True, context_length=self.n_ctx)

    def _end_tokens(self, configured, eos_text: str) -> frozenset[int]:
        """genai's EOS ids plus the end-of-turn/-text tokens the vocabulary has (as llama.cpp's
        end-of-generation set: a Qwen completion ends in <|endoftext|>, its chat in <|im_end|>)."""
        ids = set(configured if isinstance(configured, list) else [configured])
        for text in (eos_text, *END_TEXTS):
            token = self._tok.token_to_id(text) if text else None
            if token is not None:
                ids.add(token)
        return frozenset(i for i in ids if isinstance(i, int))

    @staticmethod
    def _choose_device(og, og_config, opts: LoadOptions, listed: list) -> str:
        """CUDA where this onnxruntime-genai build has it and offload is not turned off, else
        the CPU (also for an fp16 export, whose config names CUDA).

        The CUDA branch is untested here (no GPU build on the project machines); any failure
        to select it keeps the CPU."""
        if opts.gpu_layers != 0 and og.is_cuda_available():
            try:
                if not any("cuda" in p for p in listed if isinstance(p, dict)):
                    og_config.clear_providers()
                    og_config.append_provider("cuda")
                return "cuda"
            except Exception:
                pass
        og_config.clear_providers()
        return "cpu"

    def close(self) -> None:
        self._model = None
        self._tok = None

    def _require(self):
        if self._model is None:
            raise EdgeAIError("the onnx backend has no model loaded")
        return self._model

    # -- text <-> tokens -----------------------------------------------------------------
    def _encode(self, text: str, *, special: bool, bos: bool) -> list[int]:
        self._require()
        # Control-token text is parsed only in template output, never in a user's raw text.
        self._tok.encode_special_tokens = not special
        try:
            return list(self._tok.encode(text, add_special_tokens=bos).ids)
        finally:
            self._tok.encode_special_tokens = False

    def tokenize(self, text: str) -> list[int]:
        return self._encode(text, special=False, bos=False)

    def detokenize(self, ids: list[int]) -> str:
        self._require()
        return self._tok.decode(list(ids), skip_special_tokens=True)

    def render(self, messages: list[Message]) -> str:
        return templates.render_chat(self._template, messages, model_id=self.spec.id if self.spec else "",
                                     bos_token=self._bos_text, eos_token=self._eos_text)

    def prompt_tokens(self, prompt: str | list[Message]) -> list[int]:
        """The exact tokens a prompt becomes: BOS where the model adds one (unless a template
        already wrote it), then the text; messages go through the chat template."""
        chat = isinstance(prompt, list)
        text = self.render(prompt) if chat else prompt
        bos = not (self._bos_text and text.startswith(self._bos_text))
        return self._encode(text, special=chat, bos=bos)

    # -- generation ----------------------------------------------------------------------
    def _max_length(self, tokens: int) -> int:
        # Gemma's windowed KV cache refuses a buffer shorter than its window.
        return min(self._limit, max(tokens, self._window, 1))

    def _params(self, length: int, params: GenParams):
        og = self._og
        search = {"max_length": self._max_length(length), "batch_size": 1}
        # genai samples with temperature, top-k and top-p; min_p and the presence/frequency
        # penalties have no counterpart there and are not applied.
        if params.temperature and params.temperature > 0:
            search.update(do_sample=True, temperature=float(params.temperature),
                          top_p=float(params.top_p or 1.0),
                          random_seed=params.seed if params.seed is not None else random.randrange(2**31))
            if params.top_k:
                search["top_k"] = int(params.top_k)
        else:
            search["do_sample"] = False
        if params.repeat_penalty and params.repeat_penalty != 1.0:
            search["repetition_penalty"] = float(params.repeat_penalty)
        if params.ignore_eos:
            search["min_length"] = search["max_length"]  # genai masks EOS until then
        og_params = og.GeneratorParams(self._require())
        og_params.set_search_options(**search)
        if params.response_format is not None:
            try:
                og_params.set_guidance("json_schema", json.dumps(_compact(params.response_format)))
            except Exception as exc:
                raise BadInput(f"the JSON schema cannot be used for guided output: {exc}") from None
        return og_params

    def stream(self, prompt: str | list[Message], params: GenParams) -> Iterator[Chunk]:
        self._require()
        chat = isinstance(prompt, list)
        text = self.render(prompt) if chat else prompt
        if not text.strip() or (chat and not any(m.content.strip() for m in prompt)):
            raise BadInput("the prompt is empty")
        tokens = self.prompt_tokens(prompt)
        if len(tokens) >= self.n_ctx:
            raise ContextOverflow(len(tokens), self.n_ctx)
        budget = min(params.max_tokens, self.n_ctx - len(tokens))
        og_params = self._params(len(tokens) + budget, params)
        return self._run(tokens, params, og_params, budget, text.rstrip().endswith(THINK_OPEN))

    def _run(self, tokens: list[int], params: GenParams, og_params, budget: int,
             thinking: bool) -> Iterator[Chunk]:
        og = self._og
        start = time.perf_counter()
        try:
            generator = og.Generator(self._require(), og_params)
        except Exception as exc:
            raise EdgeAIError(f"onnxruntime-genai could not start generating: {exc}") from None
        for i in range(0, len(tokens), self._step):
            generator.append_tokens(tokens[i:i + self._step])
            yield Chunk()  # a point where a closed stream stops the prefill
        decoder = IncrementalDecoder(self._tok)
        text = TextStream(params.stop, in_reasoning=thinking)
        first = last = None
        count, pending, finish = 0, [], "length"
        while count < budget and not generator.is_done():
            generator.generate_next_token()
            token = int(generator.get_next_tokens()[0])
            last = time.perf_counter()
            first = first or last
            if token in self._eos and not params.ignore_eos:
                finish = "stop"
                break
            count += 1
            pending.append(token)
            answer, reasoning = text.feed(decoder.step(token))
            if answer or reasoning:
                yield Chunk(text=answer, reasoning=reasoning, token_ids=tuple(pending))
                pending = []
            if text.stopped:
                finish = "stop"
                break
        del generator  # frees the KV buffer now, not at the next collection
        answer, reasoning = text.feed(decoder.flush())
        tail = text.flush()
        yield final_chunk(
            text=answer + tail[0], reasoning=reasoning + tail[1], token_ids=tuple(pending),
            finish_reason=finish, prompt_tokens=len(tokens), completion_tokens=count, start=start,
            first=first, last=last, peak_mem_mb=peak_rss_mb())

    # -- logits (validation, perplexity) -------------------------------------------------
    def logits(self, ids: Sequence[int]):
        """Logits for every position of `ids` (shape len(ids) × vocab, float32), from a fresh cache."""
        import numpy as np

        model = self._require()
        ids = [int(i) for i in ids]
        if not ids:
            raise BadInput("no token ids to compute logits for")
        if len(ids) > self._limit:
            raise ContextOverflow(len(ids), self._limit)
        og_params = self._og.GeneratorParams(model)
        og_params.set_search_options(max_length=self._max_length(len(ids)), batch_size=1)
        generator = self._og.Generator(model, og_params)
        rows = []
        for i in range(0, len(ids), LOGITS_STEP):
            generator.append_tokens(ids[i:i + LOGITS_STEP])
            out = np.asarray(generator.get_output("logits"))
            rows.append(out.reshape(-1, out.shape[-1]).astype(np.float32))
        return np.concatenate(rows)


class IncrementalDecoder:
    """Token ids -> text pieces, never splitting a UTF-8 character or a SentencePiece space.

    Each step decodes the last few tokens with some already-shown context before them and
    emits what the new ones added, once it no longer ends in an incomplete character (U+FFFD).
    (`tokenizers`' own DecodeStream raises on a byte-fallback sequence that is not UTF-8.)"""

    def __init__(self, tokenizer):
        self._tok = tokenizer
        self._ids: list[int] = []
        self._prefix = 0  # start of the context decoded with the new tokens
        self._read = 0  # end of what was already shown

    def _decode(self, ids: list[int]) -> str:
        return self._tok.decode(ids, skip_special_tokens=True)

    def step(self, token: int) -> str:
        self._ids.append(token)
        shown = self._decode(self._ids[self._prefix:self._read])
        text = self._decode(self._ids[self._prefix:])
        if len(text) <= len(shown) or text.endswith("\ufffd"):
            return ""
        self._prefix, self._read = self._read, len(self._ids)
        return text[len(shown):]

    def flush(self) -> str:
        """Whatever is still held back (an incomplete character is shown as U+FFFD)."""
        shown = self._decode(self._ids[self._prefix:self._read])
        text = self._decode(self._ids[self._prefix:])
        self._prefix = self._read = len(self._ids)
        return text[len(shown):] if len(text) > len(shown) else ""


def _compact(schema):
    """Ask llguidance for compact JSON: with free whitespace a small model may emit nothing else."""
    if not isinstance(schema, dict):
        raise BadInput("the JSON schema must be an object")
    return {**schema, "x-guidance": {"whitespace_flexible": False, **schema.get("x-guidance", {})}}
