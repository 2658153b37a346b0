"""The machine's memory read bandwidth, measured so that it repeats, and cached per machine.

Boundary: measures (numpy, pinned threads) and keeps one JSON per cache dir (`cache_path`), an
entry per machine (`machine_key`: CPU model, cores, RAM); knows nothing about models or results
(bench/llm.py turns the figure into a % of the ceiling). numpy is imported inside `probe`.

Why each choice (the first probe, one 256 MiB reduce, read 19-63 GB/s run to run on the 2-core
VM this was written on, whose 260 MiB L3 is shared with other guests):
- buffer: 4x the last-level cache (at least 512 MiB, at most 2 GiB and a quarter of the free
  memory), read in order, so no read can be served from a cache the neighbours left warm;
- reads: the buffer in order, in pieces (1/16th on a small machine) each timed on its own, a
  round's pieces also timed together as a whole pass: a piece was last read a buffer's length
  before (evicted: 65 MiB pieces
  peaked at the same 31-32 GB/s in 520, 1040 and 2080 MiB buffers), and a short read can fall
  between a neighbour's time slices where a whole pass cannot (at load 3-4 on the 2 cores whole
  passes peaked at 10-16 GB/s, pieces at 28-32, five probes within 11% of each other);
- threads: 1, 2, 4, ... and all cores, each pinned to its own core (`os.sched_setaffinity`,
  where the OS has it), started once and released together by a barrier; a read is timed from
  the release to the last thread's finish;
- kernel: `np.maximum.reduce` over int64: SIMD, no copy, no temporary. Measured there (1 GiB,
  2 threads): 25-29 GB/s, float32 the same; `np.add.reduce` float32 14-15 (pairwise summation
  does not stream); BLAS sgemv 12 and `dot` 10 (1 thread); `count_nonzero` 7;
- a warm-up read per configuration, not kept; then rounds that interleave the configurations,
  so a neighbour's burst costs every configuration a little rather than one of them entirely,
  until the best has stopped improving (or a time cap);
- the ceiling is the fastest warmed read: interference only ever slows a read down, so the max
  is what the machine can do. Its spread is that of each round's fastest read (min/median/max:
  how far the ceiling moves from round to round); it and the load average at the start go with
  it, and every probe is kept in the entry's history.
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
from pathlib import Path

PROBE_VERSION = 3  # entries measured by another method are measured again
KERNEL = "numpy max-reduce int64"
HISTORY = 20  # probes kept per machine, newest last


# -- the cache --------------------------------------------------------------------------------------
def cache_path() -> Path:
    """`bandwidth.json` beside the shared models cache: the user cache dir, or the parent of
    `EDGEAI_SHARED_CACHE` (so tests, which set it to a tmp dir, never touch the user's)."""
    from edgeai.config import shared_models_dir

    return shared_models_dir().parent / "bandwidth.json"


def usable_cpus() -> list[int]:
    """The CPUs this process may run on (all of them where the OS cannot say)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return list(range(os.cpu_count() or 1))


def machine_key() -> str:
    """What a measurement belongs to: the CPU model, the cores this process may use, the RAM."""
    from edgeai.system import cpu_info, memory_gb

    total = memory_gb()[0]
    ram = f"{total:.0f} GB" if total else "? GB"
    return f"{cpu_info().get('model') or 'unknown CPU'} | {len(usable_cpus())} cores | {ram}"


def _load(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # missing or damaged: it is a cache, measure again
        return {"machines": {}}
    return data if isinstance(data.get("machines"), dict) else {"machines": {}}


def cached_probe(*, remeasure: bool = False, path: Path | None = None, **probe_args) -> tuple[dict, bool]:
    """This machine's probe and whether it came from the cache. Measured (and saved, with the
    history of earlier probes) when the cache has none, holds another method's, or `remeasure`."""
    from edgeai.fileio import atomic_write

    path = Path(path) if path else cache_path()
    key = machine_key()
    data = _load(path)
    entry = data["machines"].get(key)
    if entry and entry.get("probe_version") == PROBE_VERSION and not remeasure:
        return entry, True
    result = probe(**probe_args)
    history = entry.get("history", []) if entry and entry.get("probe_version") == PROBE_VERSION else []
    history = [*history, {"measured_utc": result["measured_utc"], "gbps": result["gbps"],
                          "spread_pct": result["spread"]["pct"], "loadavg": result["loadavg"]}]
    result = {**result, "key": key, "history": history[-HISTORY:]}
    data["machines"][key] = result
    atomic_write(path, json.dumps(data, indent=2) + "\n")
    return result, False


def device_entry(result: dict, cached: bool) -> dict:
    """The probe as the result file's `device.bandwidth` (schema v1: `measured_gbps`, `method`,
    plus the spread and where it came from)."""
    return {"measured_gbps": result["gbps"], "method": result["method"], "spread": result["spread"],
            "threads": result["threads"], "measured_utc": result["measured_utc"],
            "loadavg": result["loadavg"], "cached": cached}


def busy(result: dict) -> bool:
    """The 1-minute load average at the start was over half the cores: others were running, so
    the figure may be low (a neighbour's thread takes the core a reader is pinned to)."""
    load = result.get("loadavg")
    return bool(load) and load[0] > 0.5 * len(usable_cpus())


def history_spread(history: list[dict], last: int = 5) -> float | None:
    """(max - min) / median of the last `last` probes' results, in % (None below 2 probes)."""
    values = [h["gbps"] for h in history[-last:]]
    return spread_pct(values) if len(values) >= 2 else None


def spread_pct(values: list[float]) -> float:
    return round(100 * (max(values) - min(values)) / statistics.median(values), 1)


# -- the measurement --------------------------------------------------------------------------------
def last_level_cache_mb(root: Path = Path("/")) -> float | None:
    """The largest cache of CPU 0 in MiB, from sysfs (None where there is no sysfs)."""
    sizes = []
    for size_file in (root / "sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        text = size_file.read_text().strip().upper()
        scale = {"K": 1 / 1024, "M": 1.0, "G": 1024.0}.get(text[-1:], 1 / 2**20)
        try:
            sizes.append(float(text.rstrip("KMG")) * scale)
        except ValueError:
            continue
    return max(sizes, default=None)


def buffer_mb(llc_mb: float | None, available_gb: float | None) -> int:
    """4x the last-level cache, at least 512 MiB, at most 2 GiB and a quarter of the free memory
    (and never under 64 MiB, for a machine that has almost none)."""
    size = max(512.0, 4 * (llc_mb or 0))
    if available_gb:
        size = min(size, available_gb * 1e9 / 2**20 / 4)
    return int(max(64.0, min(size, 2048.0)))


def thread_counts(cores: int) -> list[int]:
    """1..cores on a small machine; powers of two and all cores on a big one (keeps it quick)."""
    if cores <= 4:
        return list(range(1, cores + 1))
    counts, n = [], 1
    while n < cores:
        counts.append(n)
        n *= 2
    return [*counts, cores]


class _Readers:
    """Pinned reader threads, each released by a barrier to reduce its slice, then joined by
    a second barrier; the caller times the pass in between."""

    def __init__(self, cpus: list[int], kernel) -> None:
        self.cpus, self.kernel = cpus, kernel
        self.work: list = [None] * len(cpus)
        self.start = threading.Barrier(len(cpus) + 1)
        self.done = threading.Barrier(len(cpus) + 1)
        self.stop = False
        self.pinned = hasattr(os, "sched_setaffinity")
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(len(cpus))]
        for thread in self.threads:
            thread.start()

    def _run(self, i: int) -> None:
        if self.pinned:
            os.sched_setaffinity(0, {self.cpus[i]})  # 0 = this thread, on Linux
        try:
            while True:
                self.start.wait()
                if self.stop:
                    return
                if self.work[i] is not None:
                    self.kernel(self.work[i])
                self.done.wait()
        except threading.BrokenBarrierError:  # closed while a pass was under way (Ctrl-C)
            return

    def timed_pass(self, slices: list) -> float:
        self.work = slices + [None] * (len(self.cpus) - len(slices))
        began = time.perf_counter()
        self.start.wait()
        self.done.wait()
        return time.perf_counter() - began

    def close(self) -> None:
        self.stop = True
        self.start.abort()  # wakes every reader wherever it waits; none is left blocked
        self.done.abort()
        for thread in self.threads:
            thread.join()


def chunks_per_pass(buffer_mb_: int, threads: int) -> int:
    """How many timed pieces a pass over the buffer is cut into: 16 where each thread's share
    stays >= 16 MiB (so the barrier's microseconds stay under 1% of a piece), fewer on a big
    machine, 1 (whole passes only) where even that would be too short."""
    return max(1, min(16, buffer_mb_ // (16 * threads)))


def probe(*, size_mb: int | None = None, threads: list[int] | None = None, min_s: float = 1.5,
          max_s: float = 4.0, settle: int = 4) -> dict:
    """Measure the read bandwidth (GB/s, 10^9 bytes/s) as the module docstring describes.

    A round, for each thread count: the buffer in order, in `chunks_per_pass` timed pieces (their
    sum is the round's whole pass) — so every piece was last read a buffer's length minus one
    piece ago (evicted), and a short piece can fall between a neighbour's time slices where a
    whole pass cannot (on the shared VM: whole passes 14-17 GB/s at load 2.6, pieces 31).
    Rounds go on until `min_s` has passed and the best has not improved by 0.5% for `settle`
    rounds, or `max_s` has passed (at least 3 rounds). Returns the ceiling (`gbps`, with its
    configuration), its `spread` and every configuration's max/median/min."""
    import numpy as np

    from edgeai.bench.schema import utc_now
    from edgeai.system import memory_gb

    cpus = usable_cpus()
    counts = sorted({t for t in (threads or thread_counts(len(cpus))) if 1 <= t <= len(cpus)})
    if not counts or min_s < 0 or max_s < min_s:
        raise ValueError(f"threads must lie in 1..{len(cpus)} and 0 <= min_s <= max_s")
    llc = last_level_cache_mb()
    size_mb = size_mb or buffer_mb(llc, memory_gb()[1])
    loadavg = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    began = time.perf_counter()
    data = np.empty(size_mb * 2**20 // 8, dtype=np.int64)
    data.fill(1)  # first touch maps every page (and numpy asks for huge pages)
    # each thread count reads the buffer in order, in timed pieces; a round's pieces together are
    # also a whole pass (timed as their sum): (threads, 1) whole passes, (threads, n) the pieces
    pieces = {t: [np.array_split(piece, t) for piece in np.array_split(data, chunks_per_pass(size_mb, t))]
              for t in counts}
    configs = [(t, n) for t in counts for n in sorted({1, len(pieces[t])})]
    samples: dict[tuple[int, int], list[float]] = {c: [] for c in configs}
    round_best: dict[tuple[int, int], list[float]] = {c: [] for c in configs}  # each round's fastest
    readers = _Readers(cpus[: max(counts)], np.maximum.reduce)
    try:
        for t in counts:  # warm-up: page tables, frequency, the threads' first wake-up
            readers.timed_pass(pieces[t][0])
        best, stale, rounds = 0.0, 0, 0
        measuring = time.perf_counter()
        while True:
            for t in counts:
                times = [readers.timed_pass(slices) for slices in pieces[t]]
                reads = [sum(s.nbytes for s in slices) / dt / 1e9
                         for slices, dt in zip(pieces[t], times, strict=True)]
                whole = data.nbytes / sum(times) / 1e9
                samples[t, 1].append(whole)
                round_best[t, 1].append(whole)
                if len(reads) > 1:
                    samples[t, len(reads)] += reads
                    round_best[t, len(reads)].append(max(reads))
            rounds += 1
            top = max(max(v) for v in samples.values())
            stale = 0 if top > best * 1.005 else stale + 1
            best = max(best, top)
            elapsed = time.perf_counter() - measuring
            if rounds >= 3 and ((elapsed >= min_s and stale >= settle) or elapsed >= max_s):
                break
    finally:
        readers.close()
    table = [{"threads": t, "size_mb": round(size_mb / n), "max": round(max(v), 2),
              "median": round(statistics.median(v), 2), "min": round(min(v), 2), "samples": len(v)}
             for (t, n), v in samples.items()]
    top = max(range(len(configs)), key=lambda i: table[i]["max"])
    winner, bests = table[top], round_best[configs[top]]
    pinned = " pinned" if readers.pinned else ""
    llc_text = f" ({size_mb / llc:.1f}x the {llc:g} MiB LLC)" if llc else ""
    piece = (f"{winner['size_mb']} MiB pieces of a {size_mb} MiB buffer{llc_text}" if configs[top][1] > 1
             else f"whole passes over a {size_mb} MiB buffer{llc_text}")
    return {
        "probe_version": PROBE_VERSION, "gbps": winner["max"], "threads": winner["threads"],
        "size_mb": winner["size_mb"], "buffer_mb": size_mb, "kernel": KERNEL, "pinned": readers.pinned,
        # how far the ceiling moves from round to round: each round's fastest read
        "spread": {"min": round(min(bests), 2), "median": round(statistics.median(bests), 2),
                   "max": winner["max"], "pct": spread_pct(bests), "rounds": len(bests)},
        "method": (f"{KERNEL}, {winner['threads']} thread{'s' if winner['threads'] > 1 else ''}{pinned}, "
                   f"{piece}; best of {winner['samples']} warmed reads"),
        "configs": table, "llc_mb": llc, "loadavg": loadavg, "rounds": rounds,
        "seconds": round(time.perf_counter() - began, 2), "measured_utc": utc_now(),
    }


# -- the text `edgeai bench bandwidth` prints -------------------------------------------------------
def describe(entry: dict, cached: bool, path: Path) -> str:
    spread, load = entry["spread"], entry.get("loadavg")
    when = f"cached, measured {entry['measured_utc']}" if cached else f"measured now, {entry['seconds']} s"
    lines = [f"memory read bandwidth: {entry['gbps']:g} GB/s ({when}"
             + (f", load average {load[0]:g})" if load else ")"),
             f"  {entry['method']}",
             f"  the best read of each of its {spread['rounds']} rounds: min {spread['min']:g} · median "
             f"{spread['median']:g} · max {spread['max']:g} GB/s"
             f" (spread {spread['pct']:g}% = (max - min) / median)",
             "", "threads  read MiB     max  median     min  samples"]
    lines += [f"{c['threads']:>7}  {c['size_mb']:>8}  {c['max']:>6.2f}  {c['median']:>6.2f}"
              f"  {c['min']:>6.2f}  {c['samples']:>7}" for c in entry["configs"]]
    history = entry.get("history", [])
    across = history_spread(history)
    if across is not None:
        last = history[-5:]
        lines += ["", f"the last {len(last)} probes here: " + " ".join(f"{h['gbps']:g}" for h in last)
                  + f" GB/s, spread {across:g}%"]
    if busy(entry):
        lines.append(f"note: the machine was busy (load {load[0]:g} on {len(usable_cpus())} cores): the "
                     "figure may be low; measure again when it is idle")
    lines.append(f"cache: {path} (--remeasure to measure again)")
    return "\n".join(lines)
