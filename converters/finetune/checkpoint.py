"""A run's checkpoints in `OUT.partial/checkpoint/`: the trainable weights, Adam's state, the
random key and the step (which is also the data position: one batch per step), written whole or
not at all.

mlx-lm's trainer saves only the adapter, in place, and starts every run at iteration 1; a resumed
run here instead restores everything a step depends on, so its losses are the uninterrupted
run's. A checkpoint is written into `checkpoint.new/`, then swapped in by renames: a kill at any
moment leaves either the old checkpoint or the new one (`checkpoint.old/` is taken when the swap
itself was cut short).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from edgeai.errors import BadInput

CURRENT, NEW, OLD = "checkpoint", "checkpoint.new", "checkpoint.old"
WEIGHTS, OPTIMIZER, STATE = "adapters.safetensors", "optimizer.safetensors", "state.json"


@dataclass(frozen=True)
class Checkpoint:
    step: int
    folder: Path


def save(partial: Path, step: int, model, optimizer, extra: dict | None = None) -> None:
    """Checkpoint the run at `step` (every weight and moment evaluated, then written)."""
    import mlx.core as mx
    from mlx.utils import tree_flatten

    new = partial / NEW
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir(parents=True)
    weights = dict(tree_flatten(model.trainable_parameters()))
    moments = {k: v for k, v in tree_flatten(optimizer.state) if isinstance(v, mx.array)}
    mx.eval(weights, moments)
    mx.save_safetensors(str(new / WEIGHTS), weights)
    mx.save_safetensors(str(new / OPTIMIZER), moments)
    key = mx.random.state[0]
    state = {"step": step, "random_key": [int(x) for x in key.tolist()], **(extra or {})}
    (new / STATE).write_text(json.dumps(state))
    for path in new.iterdir():
        with path.open("rb") as handle:
            os.fsync(handle.fileno())
    current, old = partial / CURRENT, partial / OLD
    if current.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(current, old)
    os.replace(new, current)
    shutil.rmtree(old, ignore_errors=True)


def latest(partial: Path) -> Checkpoint | None:
    """The newest whole checkpoint in `partial`, or None."""
    for name in (CURRENT, OLD):
        folder = partial / name
        try:
            state = json.loads((folder / STATE).read_text())
        except (OSError, ValueError):
            continue
        if (folder / WEIGHTS).is_file() and (folder / OPTIMIZER).is_file():
            return Checkpoint(step=int(state["step"]), folder=folder)
    return None


def restore(checkpoint: Checkpoint, model, optimizer) -> dict:
    """Load a checkpoint into a model whose trainable layers are already in place, and into an
    optimizer initialised on them; returns its state.json."""
    import mlx.core as mx
    from mlx.utils import tree_flatten, tree_unflatten

    weights = mx.load(str(checkpoint.folder / WEIGHTS))
    expected = {k for k, _ in tree_flatten(model.trainable_parameters())}
    if set(weights) != expected:
        raise BadInput(f"the checkpoint in {checkpoint.folder.parent} does not match this model's "
                       "trainable layers", "resume with the options the run started with")
    model.load_weights(list(weights.items()), strict=False)
    optimizer.init(model.trainable_parameters())
    moments = mx.load(str(checkpoint.folder / OPTIMIZER))
    state = dict(tree_flatten(optimizer.state))
    state.update(moments)
    optimizer.state = tree_unflatten(list(state.items()))
    mx.eval(model.parameters(), optimizer.state)
    return json.loads((checkpoint.folder / STATE).read_text())
