"""`edgeai doctor --tune`: measure, on this machine, the thread count, the prompt batch size and
(where the model is installed in several formats) the backend, and write the choices into the
config file so the chat and every command use them.

Each probe is a short `llm`-suite run in a child process (bench/llm.py), so a probe that crashes
is reported and skipped. Rules, and why:
- threads: the highest decode tok/s; within 3% of it, the fewest threads (they leave cores to the
  UI and to other programs, and decode is bandwidth-bound, so more threads often buy nothing);
- n_batch (prompt tokens per evaluation step): the smallest within 5% of the best prefill tok/s,
  because a smaller step lets Esc stop a long prompt sooner;
- backend: the highest decode tok/s among the formats installed for the model.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from edgeai.bench.llm import Plan, planned_ticks, run_child

BATCH_SIZES = (64, 128, 256, 512)


@dataclass
class Probe:
    what: str  # "threads" | "n_batch" | "backend"
    value: object
    prefill_tps: float | None = None
    decode_tps: float | None = None
    error: str | None = None


@dataclass
class Tuning:
    probes: list[Probe] = field(default_factory=list)
    choice: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def thread_candidates(cores: int) -> list[int]:
    """Every count on small machines; on big ones powers of two plus half and all cores."""
    if cores <= 8:
        return list(range(1, cores + 1))
    counts = {1, cores // 2, cores} | {2**i for i in range(1, cores.bit_length()) if 2**i < cores}
    return sorted(counts)


def _median(done: dict, prefix: str) -> float | None:
    import statistics

    values = [s["value"] for s in done["samples"] if s["test"].startswith(prefix)]
    return statistics.median(values) if values else None


def _probe(plan: Plan, backend: str, what: str, value, on_probe, on_tick) -> Probe:
    on_probe(f"{what}={value}", planned_ticks(plan, backend))
    try:
        done = run_child(plan, backend, on_tick)
    except RuntimeError as exc:
        return Probe(what, value, error=str(exc))
    return Probe(what, value, _median(done, "pp"), _median(done, "tg"))


def _pick(probes: list[Probe], key: str, tolerance: float) -> Probe | None:
    ok = [p for p in probes if getattr(p, key)]
    if not ok:
        return None
    best = max(getattr(p, key) for p in ok)
    return min((p for p in ok if getattr(p, key) >= best * (1 - tolerance)), key=lambda p: p.value)


def tune(model: str, backend: str, cores: int, *, formats: dict[str, str] | None = None,
         on_probe: Callable[[str, int], None] = lambda label, total: None,
         on_tick: Callable[[str], None] = lambda label: None) -> Tuning:
    """Probe threads, then n_batch at the best thread count, then the backends of `formats`
    (backend -> model path or id) when there is more than one."""
    result = Tuning()
    base = Plan(model=model, pp=128, tg=16, warmup=1, repeats=2, n_ctx=2048)
    for threads in thread_candidates(cores):
        plan = replace(base, threads=threads)
        result.probes.append(_probe(plan, backend, "threads", threads, on_probe, on_tick))
    best = _pick([p for p in result.probes if p.what == "threads"], "decode_tps", 0.03)
    if best is None:
        result.notes.append("every thread probe failed: nothing was written")
        return result
    result.choice["threads"] = best.value
    batch_probes = []
    for size in BATCH_SIZES:
        plan = replace(base, threads=best.value, pp=256, tg=0, n_batch=size)
        batch_probes.append(_probe(plan, backend, "n_batch", size, on_probe, on_tick))
    result.probes += batch_probes
    chosen = _pick(batch_probes, "prefill_tps", 0.05)
    if chosen is not None:
        result.choice["n_batch"] = chosen.value
    if formats and len(formats) > 1:
        backend_probes = []
        for name, path in formats.items():
            plan = replace(base, model=path, threads=best.value)
            backend_probes.append(_probe(plan, name, "backend", name, on_probe, on_tick))
        result.probes += backend_probes
        ok = [p for p in backend_probes if p.decode_tps]
        if ok:
            result.choice["backend"] = max(ok, key=lambda p: p.decode_tps).value
    else:
        result.notes.append(f"backend: only one format is installed for {model} ({backend}); "
                            "others come from `edgeai convert`")
    return result


def write_config(path: Path, values: dict[str, object]) -> None:
    """Set top-level keys in a TOML config, keeping every other line (comments included)."""
    from edgeai.fileio import atomic_write

    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    for key, value in values.items():
        text = f'{key} = "{value}"' if isinstance(value, str) else f"{key} = {value}"
        pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
        # only top-level keys: stop at the first [table] header
        end = next((i for i, line in enumerate(lines) if line.lstrip().startswith("[")), len(lines))
        index = next((i for i in range(end) if pattern.match(lines[i])), None)
        if index is None:
            lines.insert(end, text)
        else:
            lines[index] = text
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, "\n".join(lines) + "\n")
