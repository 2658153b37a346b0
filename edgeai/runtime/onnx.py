"""The `onnx` backend: an `edgeai convert --to onnx` folder through onnxruntime-genai.

Load + step: one `og.Model`, prompts through `decode.ChatPrompt`, and a generator as the
`TokenStep` the shared loop (`decode.run`) drives. The folder is what onnxruntime-genai's model
builder writes: `genai_config.json`, `model.onnx` (+ `.data`), `tokenizer.json`, `tokenizer_config.json` and
maybe `chat_template.jinja`. Text goes through the exported `tokenizer.json` with the
`tokenizers` library, so ids equal the Hugging Face tokenizer's (BOS included where the model
adds one) and a user's raw text never turns into control tokens. Sampling, the KV cache and
JSON-schema guidance
are onnxruntime-genai's own; the prompt is appended in steps so a closed stream abandons it.
Prefix reuse: the last generator is kept (its KV buffer sized for the whole window) and the next
prompt with the same sampling options rewinds it to the tokens both share (`rewind_to`) and
appends only the rest, so a chat's 2nd turn evaluates only the new turn. A seeded sampled
request or a guided one starts clean (its seed must repeat; guidance is stateful). The KV cache
cannot be saved to a file: onnxruntime-genai 0.18 has no way to put one back (bench/tune_formats.py).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from pathlib import Path

from edgeai.config import default_threads
from edgeai.errors import BadInput, ContextOverflow, EdgeAIError, MissingExtra, ModelFormatError
from edgeai.runtime import templates
from edgeai.runtime.decode import ChatPrompt, TextDetokenizer, common_prefix, run, steps
from edgeai.runtime.model_files import own_template, read_json, token_text
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
        self._prompt: ChatPrompt | None = None
        self._eos: frozenset[int] = frozenset()
        self._window = 0
        self._limit = 0  # the model's own context length
        self.n_ctx = 0
        self.device = "cpu"
        self.spec: ModelSpec | None = None
        self._step = PREFILL_STEP
        self._kept = None  # (sampling key, generator) of the last reusable stream
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
        self._step = opts.prefill_step or PREFILL_STEP
        chosen = opts.chat_template or spec.chat_template
        template = templates.choose_template(chosen, own_template(folder), config.get("type", ""),
                                             lambda t: self._tok.token_to_id(t) is not None)
        if template is not None:
            templates.prepare(template)
        self._prompt = ChatPrompt(template, model_id=spec.id, encode=self._encode,
                                  bos_text=token_text(tok_config.get("bos_token")),
                                  eos_text=token_text(tok_config.get("eos_token")))
        self.capabilities = Capabilities(chat_template=template is not None, grammar=True,
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
        self._kept = None
        self._model = None
        self._tok = None

    def _require(self):
        if self._model is None:
            raise EdgeAIError("the onnx backend has no model loaded")
        return self._model

    # -- text <-> tokens -----------------------------------------------------------------
    def _encode(self, text: str, special: bool, add_bos: bool) -> list[int]:
        self._require()
        # Control-token text is parsed only in template output, never in a user's raw text.
        self._tok.encode_special_tokens = not special
        try:
            return list(self._tok.encode(text, add_special_tokens=add_bos).ids)
        finally:
            self._tok.encode_special_tokens = False

    def tokenize(self, text: str) -> list[int]:
        return self._encode(text, False, False)

    def detokenize(self, ids: list[int]) -> str:
        self._require()
        return self._decode(list(ids))

    def _decode(self, ids: list[int]) -> str:
        return self._tok.decode(ids, skip_special_tokens=True)

    def render(self, messages: list[Message]) -> str:
        self._require()
        return self._prompt.render(messages)

    def prompt_tokens(self, prompt: str | list[Message]) -> list[int]:
        """The exact tokens a prompt becomes: BOS where the model adds one (unless a template
        already wrote it), then the text; messages go through the chat template."""
        self._require()
        return self._prompt.tokens(prompt)

    # -- generation ----------------------------------------------------------------------
    def _max_length(self, tokens: int) -> int:
        # Gemma's windowed KV cache refuses a buffer shorter than its window.
        return min(self._limit, max(tokens, self._window, 1))

    def _search(self, length: int, params: GenParams) -> dict:
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
        return search

    def _params(self, search: dict, params: GenParams):
        og_params = self._og.GeneratorParams(self._require())
        og_params.set_search_options(**search)
        if params.response_format is not None:
            try:
                og_params.set_guidance("json_schema", json.dumps(_compact(params.response_format)))
            except Exception as exc:
                raise BadInput(f"the JSON schema cannot be used for guided output: {exc}") from None
        return og_params

    def stream(self, prompt: str | list[Message], params: GenParams) -> Iterator[Chunk]:
        self._require()
        plan = self._prompt.plan(prompt, params, self.n_ctx)
        reusable = params.response_format is None and (params.seed is None or not params.temperature)
        # a reusable generator holds the whole window, so any later turn fits in it
        search = self._search(self.n_ctx if reusable else len(plan.tokens) + plan.budget, params)
        key = json.dumps({k: v for k, v in search.items() if k != "random_seed"}, sort_keys=True) \
            if reusable else None
        step = _GenaiStep(lambda tokens: self._generator(tokens, key, search, params), self._step)
        return run(step, plan, params, eos=self._eos, detokenizer=TextDetokenizer(self._decode))

    def _generator(self, tokens: list[int], key: str | None, search: dict, params: GenParams):
        """(generator, tokens already in its cache): the kept one rewound to the prefix it
        shares with `tokens` when the sampling options match, else a new one."""
        if key is not None and self._kept is not None and self._kept[0] == key:
            generator = self._kept[1]
            held = [int(i) for i in generator.get_sequence(0)]
            # the last sampled token is in the sequence but not yet in the cache; at least one
            # prompt token is evaluated so the first sample has fresh logits
            common = min(common_prefix(held, tokens), len(held) - 1, len(tokens) - 1)
            if common > 0:
                generator.rewind_to(common)
                return generator, common
        self._kept = None  # its KV buffer goes before the next one is allocated
        try:
            generator = self._og.Generator(self._require(), self._params(search, params))
        except Exception as exc:
            raise EdgeAIError(f"onnxruntime-genai could not start generating: {exc}") from None
        if key is not None:
            self._kept = (key, generator)
        return generator, 0

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


class _GenaiStep:
    """The decode loop's step: an onnxruntime-genai generator, which samples with its own search
    options and appends the token it sampled itself (so `feed` has nothing to do)."""

    def __init__(self, open_generator, prefill_step: int) -> None:
        self._open, self._size = open_generator, prefill_step
        self._generator = None

    def prefill(self, tokens: list[int]) -> Iterator[None]:
        self._generator, done = self._open(tokens)
        for part in steps(tokens[done:], self._size):
            self._generator.append_tokens(list(part))
            yield

    def sample(self) -> int:
        self._generator.generate_next_token()
        return int(self._generator.get_next_tokens()[0])

    def feed(self, token: int) -> None:
        pass  # genai appended it when it sampled it

    def close(self) -> None:
        self._generator = None  # a kept generator lives on in the backend; any other is freed now


def _compact(schema):
    """Ask llguidance for compact JSON: with free whitespace a small model may emit nothing else."""
    if not isinstance(schema, dict):
        raise BadInput("the JSON schema must be an object")
    return {**schema, "x-guidance": {"whitespace_flexible": False, **schema.get("x-guidance", {})}}
