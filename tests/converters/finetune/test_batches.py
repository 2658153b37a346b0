"""Fine-tuning batches and losses: padding as mlx-lm pads, exact resume, and losses on a real tiny model.

The model is the tiny Llama checkpoint loaded by mlx-lm (2 layers, 1k vocabulary, random weights).
"""

from __future__ import annotations

import time
from itertools import islice
from pathlib import Path

import pytest

from edgeai.converters.finetune.batches import batches, eval_loss, masked_loss
from edgeai.converters.finetune.data import Example, load_dataset
from edgeai.errors import BadInput

np = pytest.importorskip("numpy")
mx = pytest.importorskip("mlx.core")

EXAMPLE = Path(__file__).resolve().parents[3] / "converters" / "finetune" / "examples" / "edgeai-facts"


@pytest.fixture(scope="module")
def tiny(tiny_models):
    """(model, tokenizer) of the tiny Llama, as mlx_lm.load gives them."""
    mlx_lm = pytest.importorskip("mlx_lm")
    return mlx_lm.load(str(tiny_models("llama")))


def make(lengths, *, prompt=0.5, seed=0) -> list[Example]:
    """Examples of the given LENGTHS, each starting with its own index so rows can be traced back;
    the first PROMPT share of each is untrained prompt."""
    rng = np.random.default_rng(seed)
    out = []
    for i, n in enumerate(lengths):
        tokens = (i,) + tuple(int(t) for t in rng.integers(3, 1024, n - 1))
        cut = max(1, int(n * prompt))
        out.append(Example(tokens, (False,) * cut + (True,) * (n - cut)))
    return out


def rows(batch) -> list[int]:
    """The examples in a batch, by the index each starts with."""
    return [int(t) for t in np.array(batch[0])[:, 0]]


def same(a, b) -> bool:
    return all(np.array_equal(np.array(x), np.array(y)) for x, y in zip(a, b, strict=True))


# ---- batches ------------------------------------------------------------------------------------


def test_batches_are_padded_to_one_plus_a_multiple_of_32_capped_at_the_limit():
    examples = make([5, 40, 33, 64, 100, 7])
    for tokens, mask in islice(batches(examples, 2, seed=0, max_seq_len=80), 6):
        assert (tokens.dtype, mask.dtype) == (mx.int32, mx.bool_)
        tokens, mask = np.array(tokens), np.array(mask)
        longest = max(min(len(examples[i].tokens), 80) for i in tokens[:, 0])
        assert tokens.shape == (2, min(1 + 32 * -(-longest // 32), 80))
        for row_tokens, row_mask in zip(tokens, mask, strict=True):
            example = examples[row_tokens[0]]
            n = min(len(example.tokens), 80)
            assert tuple(row_tokens[:n]) == example.tokens[:n] and not row_tokens[n:].any()
            assert tuple(row_mask[:n]) == example.mask[:n] and not row_mask[n:].any()


def test_each_epoch_groups_by_length_and_no_example_is_left_out_for_good():
    lengths = list(range(3, 25))  # 22 examples, all lengths distinct: 5 batches of 4 an epoch, 2 left out
    examples = make(lengths)
    stream = batches(examples, 4, seed=3, max_seq_len=64)
    seen = set()
    for _ in range(8):
        epoch = [rows(next(stream)) for _ in range(5)]
        kept = sorted((i for batch in epoch for i in batch), key=lambda i: lengths[i])
        assert len(set(kept)) == 20
        # grouped by length: each batch is a run of neighbours in the epoch's length order
        assert sorted(sorted(batch, key=lambda i: lengths[i]) for batch in epoch) == \
            sorted(kept[k:k + 4] for k in range(0, 20, 4))
        seen.update(kept)
    assert seen == set(range(22))  # mlx-lm would never train on the two longest


def test_a_resumed_iterator_sees_exactly_the_batches_the_uninterrupted_one_saw():
    examples = make([3 + (i * 7) % 50 for i in range(23)])  # 5 batches an epoch
    fresh = list(islice(batches(examples, 4, seed=11, max_seq_len=48), 17))
    for start in (1, 4, 5, 6, 12):  # mid-epoch, just before, at and after the epoch boundaries
        resumed = list(islice(batches(examples, 4, seed=11, max_seq_len=48, start=start), 17 - start))
        assert all(same(a, b) for a, b in zip(resumed, fresh[start:], strict=True)), start
    assert [rows(b) for b in fresh[:5]] != [rows(b) for b in fresh[5:10]]  # epochs are reshuffled


def test_resuming_far_into_a_run_builds_nothing_it_skips():
    examples = make([10] * 40)
    began = time.perf_counter()
    tokens, _ = next(batches(examples, 4, seed=0, max_seq_len=64, start=10**12))
    assert time.perf_counter() - began < 2 and tokens.shape == (4, 33)


def test_the_order_depends_on_the_seed_only_never_on_numpy_global_state():
    examples = make([3 + i for i in range(30)])
    np.random.seed(1)
    state = np.random.get_state()[1].copy()
    first = [rows(b) for b in islice(batches(examples, 3, seed=5, max_seq_len=64), 20)]
    assert np.array_equal(np.random.get_state()[1], state)  # untouched
    np.random.seed(99)
    assert first == [rows(b) for b in islice(batches(examples, 3, seed=5, max_seq_len=64), 20)]
    assert first != [rows(b) for b in islice(batches(examples, 3, seed=6, max_seq_len=64), 20)]


def test_a_batch_larger_than_the_data_is_refused():
    with pytest.raises(BadInput, match="a batch of 4 needs at least 4 examples, the data has 3"):
        next(batches(make([5, 6, 7]), 4, seed=0, max_seq_len=32))


# ---- losses -------------------------------------------------------------------------------------


def test_masked_loss_equals_mlx_lm_default_loss_over_the_same_span(tiny):
    trainer = pytest.importorskip("mlx_lm.tuner.trainer")
    model, _ = tiny
    examples = make([20, 45, 31, 60], prompt=0.3)
    tokens, _ = next(batches(examples, 4, seed=0, max_seq_len=128))
    starts = [int(np.argmax(examples[i].mask)) for i in rows((tokens,))]
    ends = [len(examples[i].tokens) for i in rows((tokens,))]
    # default_loss counts targets at positions offset..length inclusive (one past the last token):
    # give masked_loss the very same positions
    mask = np.zeros(tokens.shape, np.bool_)
    for row, (start, end) in enumerate(zip(starts, ends, strict=True)):
        mask[row, start:end + 1] = True
    ours, ours_n = masked_loss(model, tokens, mx.array(mask))
    theirs, theirs_n = trainer.default_loss(model, tokens, mx.array(list(zip(starts, ends, strict=True))))
    assert ours.dtype == mx.float32 and int(ours_n) == int(theirs_n)
    assert float(ours) == pytest.approx(float(theirs), rel=1e-6)


def test_masked_loss_is_the_mean_cross_entropy_of_the_target_tokens(tiny):
    model, _ = tiny
    tokens, mask = next(batches(make([12, 19, 26]), 3, seed=0, max_seq_len=64))
    loss, n = masked_loss(model, tokens, mask)
    logits = np.array(model(tokens[:, :-1]).astype(mx.float32), dtype=np.float64)
    logp = logits - logits.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    targets, where = np.array(tokens)[:, 1:], np.array(mask)[:, 1:]
    picked = np.take_along_axis(logp, targets[..., None], -1)[..., 0]
    assert int(n) == where.sum()
    assert float(loss) == pytest.approx(-picked[where].mean(), rel=1e-5)


def test_a_batch_with_no_targets_has_zero_loss_not_nan(tiny):
    model, _ = tiny
    tokens, mask = next(batches(make([12, 19]), 2, seed=0, max_seq_len=64))
    loss, n = masked_loss(model, tokens, mx.zeros_like(mask))
    assert (float(loss), int(n)) == (0.0, 0)


def test_masked_loss_trains_the_way_mlx_lm_calls_it(tiny):
    """Inside nn.value_and_grad and mx.compile, as trainer.train does: the loss on a batch falls."""
    import mlx.nn as nn
    import mlx.optimizers as optim
    from mlx.utils import tree_map

    model, _ = tiny
    before = tree_map(lambda p: p, model.parameters())  # to put the weights back for the other tests
    optimizer = optim.Adam(learning_rate=1e-3)
    value_and_grad = nn.value_and_grad(model, masked_loss)
    state = [model.state, optimizer.state]

    def step(tokens, mask):
        (loss, n), grad = value_and_grad(model, tokens, mask)
        optimizer.update(model, grad)
        return loss, n

    step = mx.compile(step, inputs=state, outputs=state)
    batch = next(batches(make([30, 40, 50, 60]), 4, seed=0, max_seq_len=64))
    try:
        losses = []
        for _ in range(4):
            loss, _n = step(*batch)
            mx.eval(state, loss)
            losses.append(float(loss))
        assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    finally:
        model.update(before)


def test_eval_loss_weights_every_target_token_equally_whatever_the_batching(tiny):
    model, _ = tiny
    examples = make([9, 40, 17, 33, 25], prompt=0.2)  # 5 examples: batches of 2 leave a partial one
    per = [masked_loss(model, *next(batches([e], 1, seed=0, max_seq_len=64))) for e in examples]
    expected = sum(float(loss) * int(n) for loss, n in per) / sum(int(n) for _, n in per)
    model.train()
    for size in (1, 2, 5):
        assert eval_loss(model, examples, size, 64) == pytest.approx(expected, rel=1e-4)
    assert model.training  # put back as found


def test_the_loss_on_the_example_dataset_is_finite(tiny):
    model, tokenizer = tiny
    data = load_dataset(EXAMPLE, tokenizer, max_seq_len=256)
    loss, n = masked_loss(model, *next(batches(data.train, 4, seed=0, max_seq_len=256)))
    assert int(n) > 0 and np.isfinite(float(loss))
    valid = eval_loss(model, data.valid, 4, 256)
    assert np.isfinite(valid) and 0 < valid < 3 * np.log(1024)
