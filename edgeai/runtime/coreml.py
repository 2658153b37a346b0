"""The `coreml` backend: an edgeai Core ML export (`OUT/<name>.mlpackage` + tokenizer files) on macOS.

v1 has no KV cache: every new token recomputes the whole sequence through the mlprogram's
flexible-length `input_ids -> logits` function (cost grows with the square of the length;
fine for short chats, the honest baseline for a stateful iOS 18 variant). Tokens come from
`tokenizer.json` through the `tokenizers` library, prompts through the model's own chat
template (or a checked built-in), sampling in numpy. Core ML predicts only on macOS: elsewhere
`load` refuses with `BackendUnavailable`. `open_mlmodel` is the one place that touches the Core
ML runtime; the backend takes another opener (tests on Linux pass the torch program the package
was converted from), so everything above prediction runs wherever tests run.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from edgeai.errors import BackendUnavailable, BadInput, ContextOverflow, EdgeAIError, MissingExtra
from edgeai.runtime import templates
from edgeai.runtime.decode import ChatPrompt, TextDetokenizer, run
from edgeai.runtime.model_files import own_template, read_json, token_text
from edgeai.types import Capabilities, Chunk, GenParams, LoadOptions, Message, ModelSpec

NOT_HERE = f"Core ML models run only on macOS: coremltools cannot predict on {sys.platform}"
DEFAULT_MAX_TOKENS = 4096  # when a package declares no upper bound for its sequence length
# Turn-end tokens of the common chat formats: a stop wherever the chosen template writes one.
TURN_ENDS = ("<|im_end|>", "<end_of_turn>", "<|eot_id|>", "<|end|>", "<|endoftext|>")

REPEAT_WINDOW = 64  # tokens the repeat/presence/frequency penalties look back over (llama.cpp's default)

# ids -> logits (len(ids) x vocab, float32 numpy array) for one whole sequence
Predict = Callable[[Sequence[int]], Any]


@contextlib.contextmanager
def quiet() -> Iterator[list[logging.LogRecord]]:
    """Keep coremltools' chatter off the user's terminal; yield its warnings for the caller.

    Its import prints eight 'Failed to load _MLModelProxy' lines on Linux (no native runtime
    in the wheel) and a torch-version warning; conversion and compression draw tqdm bars on
    stderr and warn about int64 casts. None of it is actionable; the skipped-weight warnings
    of a compression pass are, so they are collected rather than dropped.
    """
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("coremltools")
    handler = Collect(logging.WARNING)
    old_level, old_propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    logger.propagate = False
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield records
    finally:
        logger.removeHandler(handler)
        # After this the library's later warnings (the torch check runs once per import) stay quiet.
        logger.setLevel(max(old_level, logging.ERROR))
        logger.propagate = old_propagate


def import_coremltools():
    try:
        with quiet():
            import coremltools
    except ImportError:
        raise MissingExtra("coremltools", "pip install 'edgeai[convert]'") from None
    return coremltools


def find_package(path: Path) -> Path:
    """The .mlpackage of an export folder (or the package itself when given one)."""
    path = Path(path)
    if path.suffix == ".mlpackage" and path.is_dir():
        return path
    packages = sorted(path.glob("*.mlpackage")) if path.is_dir() else []
    if len(packages) != 1:
        found = "none" if not packages else ", ".join(p.name for p in packages)
        raise BadInput(f"{path} is not a Core ML export: expected one .mlpackage, found {found}",
                       "pass the folder `edgeai convert SRC --to coreml -o OUT` wrote")
    return packages[0]


def sequence_range(spec) -> tuple[int, int]:
    """(shortest, longest) `input_ids` length the package accepts, from its spec."""
    for feature in spec.description.input:
        if feature.name != "input_ids":
            continue
        array = feature.type.multiArrayType
        if array.HasField("shapeRange"):
            last = array.shapeRange.sizeRanges[-1]
            high = last.upperBound if last.upperBound > 0 else DEFAULT_MAX_TOKENS
            return int(last.lowerBound), int(high)
        if array.shape:
            return int(array.shape[-1]), int(array.shape[-1])
    raise BadInput("the Core ML package has no flexible `input_ids` input",
                   "it was not made by `edgeai convert --to coreml`")


def open_mlmodel(package: Path) -> tuple[Predict, int, int]:
    """The package loaded by the Core ML runtime (macOS only): a predictor for inputs of its
    accepted lengths, the shortest and the longest of them."""
    if sys.platform != "darwin":
        raise BackendUnavailable(NOT_HERE, "run this export on a Mac (macOS 14 or later), or convert "
                                           "to gguf, onnx or mlx to run it here")
    import numpy as np

    ct = import_coremltools()
    with quiet():
        model = ct.models.MLModel(str(package), compute_units=ct.ComputeUnit.ALL)
    low, high = sequence_range(model.get_spec())

    def predict(ids: Sequence[int]):
        out = model.predict({"input_ids": np.asarray([list(ids)], dtype=np.int32)})["logits"]
        return np.asarray(out, dtype=np.float32).reshape(len(ids), -1)

    return predict, low, high


def padded(predict: Predict, shortest: int) -> Predict:
    """`predict` for any length >= 1, where the package needs at least `shortest` tokens (2 when
    torch.export would not take 1): the model is causal, so tokens appended after the real ones
    cannot change their logits, and the extra rows are dropped."""
    if shortest <= 1:
        return predict

    def predict_any(ids: Sequence[int]):
        n = len(ids)
        return predict(list(ids) + [0] * max(0, shortest - n))[:n]

    return predict_any


def sample(logits, history: Sequence[int], params: GenParams, rng) -> int:
    """One token from the last position's logits: penalties, then top-k / top-p / min-p on the
    untempered distribution, then temperature (llama.cpp's order); greedy at temperature 0."""
    import numpy as np

    logits = np.array(logits, dtype=np.float64)
    history = history[-REPEAT_WINDOW:]
    if len(history) and (params.repeat_penalty != 1.0 or params.presence_penalty or params.frequency_penalty):
        seen, counts = np.unique(np.asarray(history), return_counts=True)
        seen_logits = logits[seen]
        if params.repeat_penalty != 1.0:
            seen_logits = np.where(seen_logits > 0, seen_logits / params.repeat_penalty,
                                   seen_logits * params.repeat_penalty)
        logits[seen] = seen_logits - params.presence_penalty - params.frequency_penalty * counts
    if params.temperature <= 0:
        return int(logits.argmax())
    order = np.argsort(-logits, kind="stable")
    if params.top_k and params.top_k > 0:
        order = order[:params.top_k]
    probs = np.exp(logits[order] - logits[order[0]])
    probs /= probs.sum()
    if params.top_p < 1.0:
        keep = int(np.searchsorted(np.cumsum(probs), params.top_p)) + 1
        order, probs = order[:keep], probs[:keep]
    if params.min_p > 0:
        keep = probs >= params.min_p * probs[0]
        order = order[keep]
    tempered = np.exp((logits[order] - logits[order[0]]) / params.temperature)
    return int(order[rng.choice(len(order), p=tempered / tempered.sum())])


class CoreMLBackend:
    name = "coreml"

    def __init__(self, open_model: Callable[[Path], tuple[Predict, int, int]] = open_mlmodel) -> None:
        self._open_model = open_model
        self._predict: Predict | None = None
        self._tok = None
        self._prompt: ChatPrompt | None = None
        self._stop_ids: frozenset[int] = frozenset()
        self.n_ctx = 0
        self.spec: ModelSpec | None = None
        self.capabilities = Capabilities(chat_template=False, grammar=False, logits=True)

    # -- loading -------------------------------------------------------------------------
    def load(self, spec: ModelSpec, opts: LoadOptions) -> None:
        path = spec.artifact("coreml")
        if path is None:
            raise BadInput(f"model {spec.id} has no Core ML artifact for the coreml backend")
        package = find_package(Path(path))
        folder = package.parent
        if not (folder / "tokenizer.json").is_file():
            raise BadInput(f"{folder} has no tokenizer.json next to {package.name}")
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise MissingExtra("the tokenizers library", "pip install tokenizers") from None
        predict, shortest, longest = self._open_model(package)  # refuses off macOS
        self._predict = padded(predict, shortest)
        self._tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        tok_config = read_json(folder / "tokenizer_config.json")
        config = read_json(folder / "config.json")
        chosen = opts.chat_template or spec.chat_template
        template = templates.choose_template(chosen, own_template(folder),
                                             config.get("model_type", spec.family), self._single_token)
        if template is not None:
            templates.prepare(template)
        eos_text = token_text(tok_config.get("eos_token"))
        self._prompt = ChatPrompt(template, model_id=spec.id, encode=self._encode, eos_text=eos_text,
                                  bos_text=token_text(tok_config.get("bos_token")))
        self._stop_ids = self._stops(folder, config, eos_text, template)
        self.spec = spec
        self.n_ctx = min(opts.n_ctx, longest) if opts.n_ctx else longest
        self.capabilities = Capabilities(chat_template=template is not None, grammar=False,
                                         logits=True, context_length=self.n_ctx)

    def _single_token(self, text: str) -> bool:
        return self._tok.token_to_id(text) is not None

    def _stops(self, folder: Path, config: dict, eos_text: str, template: str | None) -> frozenset[int]:
        ids: set[int] = set()
        for source in (read_json(folder / "generation_config.json"), config):
            value = source.get("eos_token_id")
            ids.update(v for v in (value if isinstance(value, list) else [value]) if isinstance(v, int))
        texts = [eos_text] + [t for t in TURN_ENDS if template and t in template]
        ids.update(i for i in map(self._tok.token_to_id, filter(None, texts)) if i is not None)
        return frozenset(ids)

    def close(self) -> None:
        self._predict = None
        self._tok = None

    def _require(self):
        if self._predict is None or self._tok is None:
            raise EdgeAIError("the coreml backend has no model loaded")
        return self._tok

    # -- text <-> tokens -----------------------------------------------------------------
    def _encode(self, text: str, special: bool, add_bos: bool) -> list[int]:
        tok = self._require()
        tok.encode_special_tokens = not special  # a user's raw text never becomes control tokens
        return list(tok.encode(text, add_special_tokens=add_bos).ids)

    def tokenize(self, text: str) -> list[int]:
        return self._encode(text, False, False)

    def detokenize(self, ids: list[int]) -> str:
        return self._require().decode(list(ids), skip_special_tokens=False)

    def render(self, messages: list[Message]) -> str:
        self._require()
        return self._prompt.render(messages)

    def prompt_tokens(self, prompt: str | list[Message]) -> list[int]:
        """The exact tokens a prompt (raw text, or messages through the template) becomes."""
        self._require()
        return self._prompt.tokens(prompt)

    # -- generation ----------------------------------------------------------------------
    def logits(self, ids: list[int]):
        """Logits for every position of `ids` (len(ids) x vocab, float32)."""
        self._require()
        if len(ids) > self.n_ctx:
            raise ContextOverflow(len(ids), self.n_ctx)
        return self._predict(list(ids))

    def stream(self, prompt: str | list[Message], params: GenParams) -> Iterator[Chunk]:
        tok = self._require()
        plan = self._prompt.plan(prompt, params, self.n_ctx)
        return run(_RecomputeStep(self._predict, params), plan, params, eos=self._stop_ids,
                   detokenizer=TextDetokenizer(lambda ids: tok.decode(ids, skip_special_tokens=True)))


class _RecomputeStep:
    """The decode loop's step without a KV cache: each token is sampled from a pass over the
    whole sequence so far (numpy sampling, `sample` above)."""

    def __init__(self, predict: Predict, params: GenParams) -> None:
        import numpy as np

        self._predict, self._params = predict, params
        self._rng = np.random.default_rng(params.seed)
        self._seq: list[int] = []

    def prefill(self, tokens: list[int]) -> Iterator[None]:
        self._seq = list(tokens)
        yield  # a point where a closed stream stops before the first (whole-prompt) pass

    def sample(self) -> int:
        return sample(self._predict(self._seq)[-1], self._seq, self._params, self._rng)

    def feed(self, token: int) -> None:
        self._seq.append(token)

    def close(self) -> None:
        self._seq = []
