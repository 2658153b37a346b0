"""Batches and losses for fine-tuning: `Example`s in, padded mlx arrays and masked losses out.

The boundary: `batches` is the training iterator (deterministic and resumable: each epoch is
ordered by its own `np.random.default_rng([seed, epoch])`, never numpy's global state, and
`start=N` jumps to batch N without building the ones before it); `masked_loss` is the loss
mlx-lm's trainer calls as `loss(model, *batch)` inside `nn.value_and_grad` and `mx.compile`, so
it is mlx ops only; `eval_loss` is the token-weighted loss over a whole split. Reading data
and building masks is data.py's; the training loop is train.py's.

A batch is `(tokens, mask)`: int32 and bool arrays of shape (batch, width), the mask True where
a token is a training target. Examples are grouped by length and padded to one plus a multiple
of 32 (capped at max_seq_len), as mlx-lm's `iterate_batches` does, so the model's input
(every token but the last) has a multiple of 32 positions.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from edgeai.errors import BadInput

PAD_TO = 32


def _width(longest: int, max_seq_len: int) -> int:
    return min(1 + PAD_TO * ((longest + PAD_TO - 1) // PAD_TO), max_seq_len)


def _pack(examples: Sequence, max_seq_len: int):
    """(tokens, mask) mx arrays for EXAMPLES, each cut to max_seq_len and zero-padded."""
    import mlx.core as mx
    import numpy as np

    lengths = [min(len(e.tokens), max_seq_len) for e in examples]
    width = _width(max(lengths), max_seq_len)
    tokens = np.zeros((len(examples), width), np.int32)
    mask = np.zeros((len(examples), width), np.bool_)
    for row, (example, length) in enumerate(zip(examples, lengths, strict=True)):
        tokens[row, :length] = example.tokens[:length]
        mask[row, :length] = example.mask[:length]
    return mx.array(tokens), mx.array(mask)


def _epoch(lengths: Sequence[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """EPOCH's batches, in order, as lists of example indices.

    The n % batch_size examples an epoch leaves out are drawn at random, so every example is
    trained on over the epochs (mlx-lm always drops the same longest ones); the rest are sorted
    by length and cut into batches of similar length, whose order is then shuffled.
    """
    import numpy as np

    rng = np.random.default_rng([seed, epoch])
    count = len(lengths) // batch_size
    kept = rng.permutation(len(lengths))[: count * batch_size]
    kept = sorted((int(i) for i in kept), key=lambda i: (lengths[i], i))
    groups = [kept[b * batch_size: (b + 1) * batch_size] for b in range(count)]
    return [groups[int(b)] for b in rng.permutation(count)]


def batches(examples: Sequence, batch_size: int, *, seed: int, max_seq_len: int,
            start: int = 0) -> Iterator[tuple[Any, Any]]:
    """Endless (tokens, mask) batches over EXAMPLES; `start=N` begins at the N-th (0-based) batch.

    Every epoch has len(examples) // batch_size batches, so batch N is found arithmetically:
    a resumed run sees exactly the batches the uninterrupted run saw from N on.
    """
    if batch_size < 1:
        raise BadInput(f"the batch size must be at least 1, not {batch_size}")
    if batch_size > len(examples):
        raise BadInput(f"a batch of {batch_size} needs at least {batch_size} examples, "
                       f"the data has {len(examples)}")
    if seed < 0 or start < 0:
        raise BadInput(f"the seed and the start batch must be non-negative (seed {seed}, start {start})")
    lengths = [min(len(e.tokens), max_seq_len) for e in examples]
    per_epoch = len(examples) // batch_size
    epoch, skip = divmod(start, per_epoch)
    while True:
        for group in _epoch(lengths, batch_size, seed, epoch)[skip:]:
            yield _pack([examples[i] for i in group], max_seq_len)
        epoch, skip = epoch + 1, 0


def masked_loss(model, tokens, mask):
    """(mean cross entropy over the target tokens as float32, the number of targets).

    Target k (token k + 1) is predicted from tokens 0..k; it counts where mask[:, k + 1] is set.
    A batch without targets (its answers cut off by truncation) gives 0 rather than NaN.
    """
    import mlx.core as mx
    import mlx.nn as nn

    logits = model(tokens[:, :-1])
    targets = mask[:, 1:]
    ce = nn.losses.cross_entropy(logits, tokens[:, 1:]) * targets
    ntoks = targets.sum()
    return ce.astype(mx.float32).sum() / mx.maximum(ntoks, 1), ntoks


def eval_loss(model, examples: Sequence, batch_size: int, max_seq_len: int) -> float:
    """The token-weighted mean loss over EXAMPLES, in order (the last partial batch included).

    Runs the model in eval mode (no dropout) and puts back the mode it found. NaN when no
    example has a target token.
    """
    import mlx.core as mx

    if batch_size < 1:
        raise BadInput(f"the batch size must be at least 1, not {batch_size}")
    training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    total, count = 0.0, 0
    try:
        for at in range(0, len(examples), batch_size):
            loss, ntoks = masked_loss(model, *_pack(examples[at: at + batch_size], max_seq_len))
            mx.eval(loss, ntoks)
            total += loss.item() * ntoks.item()
            count += ntoks.item()
    finally:
        if training and hasattr(model, "train"):
            model.train()
    return total / count if count else float("nan")
