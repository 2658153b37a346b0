"""PNG plots for `edgeai bench compare`: decode and prefill speed per device, decode vs depth.

Boundary: takes loaded results (bench/compare.py loads them) and writes PNG files atomically.
matplotlib is imported here only, inside functions, on its Agg canvas (no display, no pyplot
state), so nothing that `edgeai --help` imports pays for it.
"""

from __future__ import annotations

import io
from pathlib import Path

from edgeai.bench.compare import fmt_num, run_names
from edgeai.fileio import atomic_write

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")
PUBLISHED_NOTE = "hatched bars: published reference, not measured here"
PLOT_FILES = ("decode.png", "prefill.png", "decode_vs_depth.png")  # every name write_plots writes


def _series(row: dict) -> str:
    return f"{row['backend']} · {row['model']} {row.get('quant') or ''}".rstrip() + f" · {row['test']}"


def bar_rows(results: list[dict], kind: str) -> list[dict]:
    """One bar per (device, backend, model, quant, test) of `kind` ("pp"/"tg") in tok/s, at the
    lowest depth that series was measured at (depth 0 where there is one)."""
    names = run_names(results)  # never merge two runs of one test (threads, ctx, build, date)
    best: dict[tuple, dict] = {}
    for i, result in enumerate(results):
        for j, row in enumerate(result["results"]):
            test = row["test"]
            if row["unit"] != "tok/s" or not test.startswith(kind) or "+" in test:
                continue
            key = (names[i, j], _series(row))
            depth = row.get("depth", 0)
            if key in best and best[key]["depth"] <= depth:
                continue
            name = f"{row['model']} {row.get('quant') or ''}".rstrip() + f" · {test}"
            best[key] = {"device": names[i, j], "backend": row["backend"],
                         "name": name + (f" @ d{depth}" if depth else ""), "value": row["median"],
                         "lo": row["min"], "hi": row["max"], "depth": depth,
                         "pct": row.get("bw_ceiling_pct"),
                         "published": result["source"]["tool"] == "published"}
    return list(best.values())


def depth_series(results: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """Decode tok/s by depth for every series measured at two depths or more."""
    names = run_names(results)
    lines: dict[str, dict[int, float]] = {}
    for i, result in enumerate(results):
        for j, row in enumerate(result["results"]):
            if row["test"].startswith("tg") and row["unit"] == "tok/s":
                name = f"{names[i, j]} · {_series(row)}"
                lines.setdefault(name, {})[row.get("depth", 0)] = row["median"]
    return {name: sorted(points.items()) for name, points in lines.items() if len(points) >= 2}


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    atomic_write(path, buf.getvalue())
    return path


def bar_chart(rows: list[dict], title: str, xlabel: str, path: Path) -> Path:
    """Horizontal bars grouped under a device heading, one colour per backend, hatched where
    published, min–max whiskers, the median (and % of the bandwidth ceiling) at each bar's end."""
    from matplotlib.patches import Patch

    backends = sorted({r["backend"] for r in rows})
    colour = {b: PALETTE[i % len(PALETTE)] for i, b in enumerate(backends)}
    devices = sorted({r["device"] for r in rows},
                     key=lambda d: -max(r["value"] for r in rows if r["device"] == d))
    fig = _figure(11, 1.4 + 0.3 * (len(rows) + len(devices)))
    ax = fig.add_subplot()
    y, ticks, labels, heads = 0, [], [], []
    for device in devices:
        ticks.append(y)
        labels.append(device)
        heads.append(len(labels) - 1)
        y += 1
        for r in sorted((r for r in rows if r["device"] == device), key=lambda r: -r["value"]):
            ax.barh(y, r["value"], height=0.75, color=colour[r["backend"]],
                    alpha=0.55 if r["published"] else 1, hatch="//" if r["published"] else None,
                    edgecolor="black", linewidth=0.4,
                    xerr=[[r["value"] - r["lo"]], [r["hi"] - r["value"]]] if r["hi"] > r["lo"] else None,
                    error_kw={"elinewidth": 0.8, "capsize": 2})
            note = f" {fmt_num(r['value'])}" + (f"  ({r['pct']:.0f}% of BW ceiling)" if r["pct"] else "")
            ax.text(r["hi"], y, note, va="center", ha="left", fontsize=8)
            ticks.append(y)
            labels.append(r["name"])
            y += 1
        y += 0.4
    ax.set_yticks(ticks, labels, fontsize=8)
    for i in heads:  # device headings: bold, flush left of the bars' labels
        ax.get_yticklabels()[i].set_fontweight("bold")
        ax.get_yticklabels()[i].set_fontsize(9)
    ax.tick_params(axis="y", length=0)
    ax.invert_yaxis()
    values = [r["value"] for r in rows]
    log = max(values) / max(min(values), 1e-9) > 30
    if log:
        ax.set_xscale("log")
        xlabel += " (log scale)"
    ax.set_xlim(left=min(r["lo"] for r in rows) / 2 if log else 0,
                right=max(r["hi"] for r in rows) * (4 if log else 1.3))
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=12, fontweight="bold")
    ax.grid(axis="x", alpha=0.3)
    handles = [Patch(facecolor=colour[b], edgecolor="black", linewidth=0.4, label=f"backend: {b}")
               for b in backends]
    if any(r["published"] for r in rows):
        handles.append(Patch(facecolor="white", edgecolor="black", hatch="//", label=PUBLISHED_NOTE))
    ax.legend(handles=handles, loc="best", fontsize=8, framealpha=0.9)
    return _save(fig, path)


def depth_chart(lines: dict[str, list[tuple[int, float]]], path: Path) -> Path:
    fig = _figure(10, 5.5)
    ax = fig.add_subplot()
    for i, (name, points) in enumerate(sorted(lines.items())):
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, marker="o", color=PALETTE[i % len(PALETTE)], label=name)
        for x, v in points:
            ax.annotate(fmt_num(v), (x, v), textcoords="offset points", xytext=(0, 6), ha="center",
                        fontsize=8)
    ax.set_title("Decode speed vs context depth", fontsize=12, fontweight="bold")
    ax.set_xlabel("context depth (tokens already in the KV cache)")
    ax.set_ylabel("decode speed (tok/s)")
    ax.set_ylim(0, max(v for pts in lines.values() for _, v in pts) * 1.15)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(0, -0.14), fontsize=8, frameon=False)
    return _save(fig, path)


def write_plots(results: list[dict], out_dir: Path) -> list[Path]:
    """decode.png, prefill.png and (where any series has two depths or more) decode_vs_depth.png;
    a plot of these names that this run did not write is deleted, so a reused folder holds no
    chart of an earlier comparison."""
    out_dir = Path(out_dir)
    written = []
    decode = bar_rows(results, "tg")
    if decode:
        written.append(bar_chart(decode, "Decode speed (tgN: generating tokens one by one)",
                                 "decode speed (tok/s), median with min–max", out_dir / "decode.png"))
    prefill = bar_rows(results, "pp")
    if prefill:
        written.append(bar_chart(prefill, "Prefill speed (ppN: reading the prompt)",
                                 "prefill speed (tok/s), median with min–max", out_dir / "prefill.png"))
    lines = depth_series(results)
    if lines:
        written.append(depth_chart(lines, out_dir / "decode_vs_depth.png"))
    for name in PLOT_FILES:
        stale = out_dir / name
        if stale not in written and (stale.is_file() or stale.is_symlink()):
            stale.unlink()
    return written
