"""A fine-tuning run's options and its plan: every flag resolved (a YAML `--config` under the
flags, mlx-lm's names accepted), the batch and LoRA depth clamped to the data and the model, and
the peak memory estimated from the model's config alone, so a plan that cannot fit is refused
with the numbers before anything heavy loads.

The estimate adds what a training step holds at its peak: the frozen weights (4-bit for QLoRA:
mlx-lm's mixed 4/6-bit recipe at group 32, about 5 bits a weight), the trainable parameters with
their gradients and Adam's two moments (4 × fp32), the activations kept for the backward pass
(every trained layer's, or only its input with `--grad-checkpoint`, plus one layer in full),
and the logits with their float32 softmax and gradient (large: the vocabulary is wide): what
`mx.get_peak_memory()` will report. The fit check adds the process around it (`PROCESS_MB`).
The per-token activation count is calibrated against measured peaks (see `ACTIVATION_WIDTH`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from edgeai.errors import BadInput

METHODS = ("lora", "dora", "qlora", "full")
MB = 1024 * 1024
# Floats a trained layer keeps per token for the backward pass, in units of the hidden size
# (norm inputs and outputs, q/k/v/o, residuals) and of the MLP width (gate, up, the activation
# and the product); attention probabilities are counted apart (heads × sequence per token).
ACTIVATION_WIDTH = (10, 4)
LOGIT_COPIES = 3  # the logits, their float32 log-softmax, and its gradient
PROCESS_MB = 400  # Python, the libraries and the tokenizer: outside MLX's count, inside the RAM
FITS = 0.9  # of the available memory: the rest is the OS's and the page cache's


@dataclass
class TuneOptions:
    """Every knob of a run, with the defaults a first run should take."""

    base: str = ""
    data: str = ""
    out: str = ""
    method: str = "lora"
    iters: int | None = None  # None: three passes over the train split, 50..1000 steps
    batch_size: int = 4
    lora_layers: int = 16
    rank: int = 8
    alpha: float = 16.0  # LoRA scale = alpha / rank (mlx-lm's `scale`)
    dropout: float = 0.0
    target_modules: list[str] | None = None  # None: every linear layer of a trained block
    learning_rate: float = 1e-4
    warmup: float = 0.1  # of the steps; then cosine decay to a tenth of the rate
    grad_accumulation: int = 1
    grad_checkpoint: bool = False
    max_seq_len: int = 2048
    train_on_prompt: bool = False
    seed: int = 0
    eval_every: int | None = None  # None: ten evaluations over the run
    save_every: int | None = None  # None: ten checkpoints over the run
    val_batches: int = 25  # valid batches per evaluation (-1: all)
    chosen: list[str] = field(default_factory=list)  # what the plan picked, and why

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "chosen"}


# mlx-lm's config names for the same knobs, so its YAML files work as they are
ALIASES = {"model": "base", "fine_tune_type": "method", "num_layers": "lora_layers",
           "max_seq_length": "max_seq_len", "grad_accumulation_steps": "grad_accumulation",
           "steps_per_eval": "eval_every", "save_every": "save_every", "mask_prompt": None,
           "adapter_path": "out", "train": None, "test": None}


def read_config(path: Path) -> dict:
    """A YAML (or JSON) run config as TuneOptions field -> value; unknown keys are an error."""
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise BadInput(f"--config {path}: no such file") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise BadInput(f"--config {path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise BadInput(f"--config {path}: expected a mapping of option names to values")
    known = {f.name for f in fields(TuneOptions)} - {"chosen"}
    out: dict = {}
    for key, value in raw.items():
        name = str(key).replace("-", "_")
        if name == "mask_prompt":  # mlx-lm's flag is the opposite of ours
            out["train_on_prompt"] = not value
            continue
        if name == "lora_parameters" and isinstance(value, dict):
            out.update({k: v for k, v in (("rank", value.get("rank")), ("dropout", value.get("dropout")),
                                          ("target_modules", value.get("keys"))) if v is not None})
            if "scale" in value:
                out["alpha"] = float(value["scale"]) * float(value.get("rank", out.get("rank", 8)))
            continue
        name = ALIASES.get(name, name)
        if name is None:
            continue
        if name not in known:
            raise BadInput(f"--config {path}: unknown option {key!r}")
        out[name] = value
    return out


def resolve_options(flags: dict, config: Path | None = None) -> TuneOptions:
    """Defaults, under the config file, under the flags the user typed (None: not typed)."""
    merged = read_config(config) if config else {}
    merged.update({k: v for k, v in flags.items() if v is not None and v is not False})
    for key in ("train_on_prompt", "grad_checkpoint"):  # flags: typed means True
        if flags.get(key):
            merged[key] = True
    try:
        options = TuneOptions(**merged)
    except TypeError as exc:
        raise BadInput(f"finetune: {exc}") from None
    check(options)
    return options


def check(options: TuneOptions) -> None:
    """Values no run can use: one line each."""
    if options.method not in METHODS:
        raise BadInput(f"--method {options.method!r}: choose one of {', '.join(METHODS)}")
    for name in ("batch_size", "lora_layers", "rank", "grad_accumulation", "max_seq_len"):
        if int(getattr(options, name)) < 1:
            raise BadInput(f"--{name.replace('_', '-')} must be at least 1")
    if options.iters is not None and options.iters < 1:
        raise BadInput("--iters must be at least 1")
    if not 0 < options.learning_rate < 1:
        raise BadInput(f"--learning-rate {options.learning_rate} is outside (0, 1)")
    if not 0 <= options.dropout < 1:
        raise BadInput(f"--dropout {options.dropout} is outside [0, 1)")


# -- clamps ------------------------------------------------------------------------------------
def clamp_to(options: TuneOptions, *, depth: int, context: int, train: int, valid: int) -> None:
    """Fit the options to this model and data, saying what changed and why."""
    say = options.chosen.append
    if options.lora_layers > depth:
        say(f"LoRA layers {options.lora_layers} → {depth}: the model has {depth} layers")
        options.lora_layers = depth
    if options.max_seq_len > context:
        say(f"max sequence {options.max_seq_len} → {context}: the model's context")
        options.max_seq_len = context
    if options.batch_size > train:
        say(f"batch {options.batch_size} → {train}: the train split has {train} records")
        options.batch_size = train
    if options.iters is None:
        per_pass = max(1, train // options.batch_size)
        options.iters = min(1000, max(50, 3 * per_pass * options.grad_accumulation))
        say(f"iters {options.iters}: three passes over {train} records at batch {options.batch_size}"
            " (at least 50, at most 1000)")
    if options.eval_every is None:
        options.eval_every = max(1, options.iters // 10)
    if options.save_every is None:
        options.save_every = max(1, options.iters // 10)
    accum = options.grad_accumulation
    if options.save_every % accum:  # a checkpoint holds no half-accumulated gradient
        options.save_every += accum - options.save_every % accum
    if valid == 0:
        say("no valid split (one record): valid loss is not reported")


def valid_batch(options: TuneOptions, valid: int) -> int:
    """A valid split smaller than the batch is evaluated at its own size, not refused."""
    return max(1, min(options.batch_size, valid))


# -- memory ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Shape:
    """What the estimate needs from a model's config.json."""

    hidden: int
    intermediate: int
    layers: int
    vocab: int
    heads: int
    kv_heads: int
    head_dim: int
    tied: bool
    dtype_bytes: int
    context: int

    @classmethod
    def from_config(cls, config_file: Path) -> Shape:
        config = json.loads(Path(config_file).read_text())
        config = config.get("text_config", config)
        hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
        dtype = str(config.get("torch_dtype") or config.get("dtype") or "float32")
        return cls(hidden=hidden, intermediate=int(config["intermediate_size"]),
                   layers=int(config["num_hidden_layers"]), vocab=int(config["vocab_size"]), heads=heads,
                   kv_heads=int(config.get("num_key_value_heads", heads)),
                   head_dim=int(config.get("head_dim") or hidden // heads),
                   tied=bool(config.get("tie_word_embeddings", False)),
                   dtype_bytes=4 if dtype in ("float32", "fp32") else 2,
                   context=int(config.get("max_position_embeddings", 2048)))

    def linears(self) -> dict[str, tuple[int, int]]:
        """A block's linear layers as (in, out), under mlx-lm's module names."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        h, i = self.hidden, self.intermediate
        return {"self_attn.q_proj": (h, q), "self_attn.k_proj": (h, kv), "self_attn.v_proj": (h, kv),
                "self_attn.o_proj": (q, h), "mlp.gate_proj": (h, i), "mlp.up_proj": (h, i),
                "mlp.down_proj": (i, h)}

    def block_params(self) -> int:
        return sum(a * b for a, b in self.linears().values())

    def embedding_params(self) -> int:
        return self.vocab * self.hidden * (1 if self.tied else 2)


@dataclass(frozen=True)
class MemoryPlan:
    """The estimated peak, part by part, in MB."""

    weights: float
    trainable: float
    activations: float
    logits: float
    trainable_params: int

    @property
    def total(self) -> float:
        return self.weights + self.trainable + self.activations + self.logits

    def lines(self) -> list[str]:
        return [f"peak memory ≈ {self.total:,.0f} MB: weights {self.weights:,.0f} + trainable "
                f"{self.trainable:,.0f} ({self.trainable_params / 1e6:.2f} M params with grads and Adam) + "
                f"activations {self.activations:,.0f} + logits {self.logits:,.0f}"]


def trained_modules(shape: Shape, options: TuneOptions) -> dict[str, tuple[int, int]]:
    linears = shape.linears()
    if not options.target_modules:
        return linears
    wanted = set(options.target_modules)
    return {k: v for k, v in linears.items() if k in wanted or k.split(".")[-1] in wanted}


def estimate(shape: Shape, options: TuneOptions, *, dense: bool = False) -> MemoryPlan:
    """The peak memory of one training step at `options`' batch and sequence length. `dense`:
    a QLoRA base held dense in float32 (on a CPU, see train.dense_on_this_device)."""
    layers = min(options.lora_layers, shape.layers)
    norm_params = (2 * layers + 1) * shape.hidden
    if options.method == "qlora" and dense:
        weights = (shape.layers * shape.block_params() + shape.embedding_params()) * 4
    elif options.method == "qlora":  # 4 bits + a 16-bit scale and bias per 32; the head in 6
        weights = shape.layers * shape.block_params() * 5 / 8 + shape.embedding_params() * 7 / 8
    else:
        weights = (shape.layers * shape.block_params() + shape.embedding_params()) * shape.dtype_bytes
    if options.method == "full":
        trainable = layers * shape.block_params() + norm_params
    else:
        per_layer = sum(options.rank * (a + b) for a, b in trained_modules(shape, options).values())
        if options.method == "dora":
            per_layer += sum(b for _, b in trained_modules(shape, options).values())  # magnitudes
        trainable = layers * per_layer
    tokens = options.batch_size * options.max_seq_len
    act_bytes = 4 if options.method == "qlora" else shape.dtype_bytes  # QLoRA computes in fp16/32
    per_layer_act = tokens * (ACTIVATION_WIDTH[0] * shape.hidden + ACTIVATION_WIDTH[1] * shape.intermediate
                              + 2 * shape.heads * options.max_seq_len) * act_bytes
    if options.grad_checkpoint:
        activations = layers * tokens * shape.hidden * act_bytes + per_layer_act
    else:
        activations = layers * per_layer_act
    logits = LOGIT_COPIES * tokens * shape.vocab * 4
    return MemoryPlan(weights=weights / MB, trainable=trainable * 16 / MB, activations=activations / MB,
                      logits=logits / MB, trainable_params=int(trainable))


def available_mb() -> tuple[float, str]:
    """Memory a run may use, and where the figure comes from."""
    from edgeai.system import memory_gb

    total, available = memory_gb()
    if available:
        return available * 1e9 / MB, "available RAM"
    if total:
        return total * 1e9 / MB, "total RAM"
    return float("inf"), "unknown"


def refuse_if_too_big(plan: MemoryPlan, options: TuneOptions, have_mb: float, where: str) -> None:
    """A plan over the budget stops here, with the numbers and what would bring it down."""
    budget = have_mb * FITS - PROCESS_MB
    if plan.total <= budget:
        return
    hints = []
    if options.batch_size > 1:
        hints.append("--batch-size 1")
    if not options.grad_checkpoint:
        hints.append("--grad-checkpoint")
    if options.max_seq_len > 512:
        hints.append("--max-seq-len 512")
    if options.method in ("lora", "dora", "full"):
        hints.append("--method qlora")
    raise BadInput(f"this plan needs about {plan.total:,.0f} MB at its peak and {max(budget, 0):,.0f} MB "
                   f"is usable ({have_mb:,.0f} MB {where}, less {PROCESS_MB} MB for the process); "
                   + (f"try {', '.join(hints)}" if hints else "use a smaller model"))
