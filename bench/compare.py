"""Bench results side by side: one run's table, a markdown comparison of many, a terminal chart.

Boundary: reads results (edgeai's own, llama-bench or mlx_lm output, published references)
and renders them; PNG plots live in bench/plots.py (matplotlib, imported only there). Every
row keeps its source so published reference points are never mistaken for a measurement.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from edgeai.bench.schema import parse_result, parse_test
from edgeai.errors import BadInput
from edgeai.fileio import atomic_write

DASH = "—"
BARS = " ▏▎▍▌▋▊▉█"  # eighths of a cell, for the terminal chart


# -- loading ----------------------------------------------------------------------------------------
def load_references() -> list[dict]:
    """The published reference results shipped in edgeai.bench/reference (cited in each file)."""
    folder = resources.files("edgeai.bench") / "reference"
    found = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            found.append(parse_result(entry.read_text(encoding="utf-8"), f"reference/{entry.name}"))
    return found


def load_any(path: Path | str) -> dict:
    """One result from an edgeai result file, llama-bench JSON/JSONL or mlx_lm output."""
    from edgeai.bench.importers import import_any

    return import_any(path)


def load_all(paths: list[Path], include_references: bool = False) -> list[dict]:
    results = [load_any(path) for path in paths]
    return results + (load_references() if include_references else [])


# -- which run a row is -----------------------------------------------------------------------------
def _settings(result: dict, row: dict) -> dict[str, object]:
    """The settings that make two measurements of one test different runs (shown as named)."""
    from edgeai.formats import backend_dist

    settings, versions = result.get("settings") or {}, result.get("versions") or {}
    dist = backend_dist(row["backend"])
    return {"threads": row.get("threads", settings.get("threads")),
            "gpu layers": row.get("gpu_layers", settings.get("gpu_layers")),
            "wait": settings.get("omp_wait_policy"), "ctx": settings.get("n_ctx"),
            "batch": settings.get("n_batch"), "draft": settings.get("draft"),
            "build": versions.get(dist) if dist else versions.get("build_commit")}


def run_names(results: list[dict]) -> dict[tuple[int, int], str]:
    """A name for every row, (result index, row index) -> name: the device label, plus each
    setting that differs from another run of the same test on that device (same backend, model,
    quant, test), then the run's date, then a number. A run is one result at one set of settings,
    all its depths together. Two runs are never merged into one row, bar or line."""
    unit_of: dict[tuple[int, int], tuple] = {}
    settings: dict[tuple, dict[str, object]] = {}
    for i, result in enumerate(results):
        for j, row in enumerate(result["results"]):
            values = _settings(result, row)
            unit = (i, tuple((k, repr(v)) for k, v in values.items()))
            unit_of[i, j], settings[unit] = unit, values
    names = {unit: results[unit[0]]["label"] for unit in settings}

    def collisions() -> list[list[tuple]]:
        groups: dict[tuple, list[tuple]] = {}
        for (i, j), unit in unit_of.items():
            row = results[i]["results"][j]
            members = groups.setdefault((names[unit], row["backend"], row["model"], row.get("quant"),
                                         row["test"]), [])
            if unit not in members:
                members.append(unit)
        return [members for members in groups.values() if len(members) > 1]

    differ: dict[tuple, set[str]] = {}
    for members in collisions():
        keys = {k for k in settings[members[0]] if len({repr(settings[u][k]) for u in members}) > 1}
        for unit in members:
            differ.setdefault(unit, set()).update(keys)
    for unit, keys in differ.items():
        names[unit] += "".join(f" · {k} {DASH if settings[unit][k] is None else settings[unit][k]}"
                               for k in settings[unit] if k in keys)
    for unit in {u for members in collisions() for u in members}:
        names[unit] += f" · {str(results[unit[0]].get('created_utc') or DASH)[:16].replace('T', ' ')}"
    for members in collisions():
        for n, unit in enumerate(members, 1):
            names[unit] += f" · #{n}"
    return {key: names[unit] for key, unit in unit_of.items()}


# -- formatting -------------------------------------------------------------------------------------
def fmt_num(value: float | None) -> str:
    if value is None:
        return DASH
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def fmt_pct(value: float | None) -> str:
    return DASH if value is None else f"{value:.1f}%"


def fmt_ceiling(row: dict) -> str:
    """A decode row's % of the bandwidth ceiling next to the bandwidth it used and, for a
    measured one, the spread of the probe's passes: "38.2% (26.1 GB/s, spread 9%)"."""
    pct, gbps, spread = row.get("bw_ceiling_pct"), row.get("bw_gbps"), row.get("bw_spread_pct")
    if pct is None or gbps is None:
        return fmt_pct(pct)
    return f"{pct:.1f}% ({gbps:g} GB/s" + ("" if spread is None else f", spread {spread:g}%") + ")"


def fmt_mb(value: float | None) -> str:
    return DASH if value is None else f"{value:,.0f} MB"


def test_label(row: dict) -> str:
    """llama-bench's way: "tg128", "pp512 @ d4096"."""
    return row["test"] + (f" @ d{row['depth']}" if row.get("depth") else "")


def source_label(result: dict) -> str:
    source = result["source"]
    if source["tool"] == "published":
        return "published"
    return f"{source['tool']} {source.get('version') or ''}".strip()


def _sort_key(row: dict) -> tuple:
    order = {"pp": 0, "tg": 1, "ttft": 2, "load": 3}
    test = row["test"]
    kind = "tg" if test.startswith("tg") else "pp" if test.startswith("pp") else test
    shape = parse_test(test) or (0, 0)
    return (order.get(kind, 9), shape, row.get("depth", 0), row["model"], row["backend"])


def pipe_table(header: list[str], rows: list[list[str]], right: set[int]) -> str:
    """A markdown pipe table padded to line up in a terminal too."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(c).rjust(w) if i in right else str(c).ljust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths, strict=True))) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if i in right else "-" * (w + 2)
                          for i, w in enumerate(widths)) + "|"
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def render_table(result: dict) -> str:
    """One run's results as a table: backend | model | quant | test | median | min–max |
    % of BW ceiling | peak MB, then one line per skipped backend with its reason."""
    header = ["backend", "model", "quant", "test", "median", "min–max", "% of BW ceiling", "peak MB"]
    rows = [[row["backend"], row["model"], row.get("quant") or DASH, test_label(row),
             f"{fmt_num(row['median'])} {row['unit']}", f"{fmt_num(row['min'])}–{fmt_num(row['max'])}",
             fmt_ceiling(row),
             DASH if row.get("peak_rss_mb") is None else f"{row['peak_rss_mb']:,.0f}"]
            for row in sorted(result["results"], key=_sort_key)]
    text = pipe_table(header, rows, right={4, 5, 6, 7}) if rows else "(no results)"
    skipped = [f"skipped {s['backend']}: {s['reason']}" for s in result.get("skipped", [])]
    return "\n".join([text, *skipped])


def compare_markdown(results: list[dict]) -> str:
    """The comparison as markdown: one row per measurement, named by its device and whatever
    tells it apart from another run of the same test (`run_names`), published references
    numbered and cited under the table."""
    energy = any(row.get("tokens_per_joule") is not None for r in results for row in r["results"])
    header = ["Device", "Backend", "Model", "Quant", "Test", "Median", "Min–max", "% of BW ceiling",
              "Peak memory", "Threads", *(["tok/J"] if energy else []), "Source"]
    names = run_names(results)
    notes: list[str] = []
    lines = []
    for i, result in enumerate(results):
        tag = source_label(result)
        if result["source"]["tool"] == "published":
            note = f"{result['source']['citation']} <{result['source']['url']}>"
            if note not in notes:
                notes.append(note)
            tag = f"published [{notes.index(note) + 1}]"
        for j, row in enumerate(result["results"]):
            threads = _settings(result, row)["threads"]
            cells = [names[i, j], row["backend"], row["model"], row.get("quant") or DASH, test_label(row),
                     f"{fmt_num(row['median'])} {row['unit']}",
                     f"{fmt_num(row['min'])}–{fmt_num(row['max'])}", fmt_ceiling(row),
                     fmt_mb(row.get("peak_rss_mb")), DASH if threads is None else str(threads)]
            if energy:
                cells.append(fmt_num(row.get("tokens_per_joule")))
            lines.append((_sort_key(row), names[i, j], [*cells, tag]))
    lines.sort(key=lambda item: (item[0][:3], item[1], item[0][3:]))
    out = ["# Bench comparison", "",
           "Decode (tgN) is memory-bound: `% of BW ceiling` = measured tok/s ÷ (bandwidth ÷ bytes read "
           "per token), next to the bandwidth used and, where it was measured, the spread of the "
           "probe's passes ((max − min) ÷ median). Rows marked *published* are reference points from "
           "the cited sources, not measurements made here.", "",
           pipe_table(header, [cells for _, _, cells in lines], right=set(range(5, 10 + energy)))]
    if notes:
        out += ["", "Published references:", ""] + [f"{i}. {note}" for i, note in enumerate(notes, 1)]
    skipped = [f"- {r['label']}: {s['backend']} skipped — {s['reason']}"
               for r in results for s in r.get("skipped", [])]
    if skipped:
        out += ["", "Skipped:", "", *skipped]
    return "\n".join(out) + "\n"


# -- charts -----------------------------------------------------------------------------------------
def decode_bars(results: list[dict]) -> list[tuple[str, float, bool]]:
    """(name, decode tok/s, published?) per run/backend/model at the lowest depth measured."""
    names = run_names(results)
    bars: dict[tuple, tuple[str, float, bool, int]] = {}
    for i, result in enumerate(results):
        published = result["source"]["tool"] == "published"
        for j, row in enumerate(result["results"]):
            if not row["test"].startswith("tg") or row["unit"] != "tok/s":
                continue
            run = names[i, j]
            key = (run, row["backend"], row["model"], row.get("quant"), row["test"])
            depth = row.get("depth", 0)
            if key in bars and bars[key][3] <= depth:
                continue
            name = f"{run} · {row['backend']} · {row['model']} {row.get('quant') or ''}".rstrip()
            bars[key] = (f"{name} {test_label(row)}", row["median"], published, depth)
    return sorted(((n, v, p) for n, v, p, _ in bars.values()), key=lambda b: -b[1])


def terminal_chart(results: list[dict], width: int = 40) -> str:
    """Horizontal bars of decode tok/s per device, printable in a terminal (* = published)."""
    bars = decode_bars(results)
    if not bars:
        return "(no decode results to chart)"
    top = max(v for _, v, _ in bars) or 1.0
    names = [f"{n}{' *' if p else ''}" for n, _, p in bars]
    pad = max(len(n) for n in names)
    lines = ["Decode tok/s (tgN, lowest depth measured)"]
    for name, (_, value, _) in zip(names, bars, strict=True):
        eighths = round(width * 8 * value / top)
        bar = BARS[-1] * (eighths // 8) + (BARS[eighths % 8] if eighths % 8 else "")
        lines.append(f"{name.ljust(pad)}  {bar.ljust(width)} {fmt_num(value)}")
    if any(p for _, _, p in bars):
        lines.append("* published reference, not measured here")
    return "\n".join(lines)


# -- the command ------------------------------------------------------------------------------------
def compare(paths: list[Path], out_dir: Path, include_references: bool = False) -> list[Path]:
    """Write out_dir/compare.md and PNG plots for the given result files (edgeai results,
    llama-bench JSON/JSONL, mlx_lm output); returns the files written."""
    return write_comparison(load_all([Path(p) for p in paths], include_references), out_dir)


def write_comparison(results: list[dict], out_dir: Path) -> list[Path]:
    """compare.md and the plots for results already loaded (`load_all`)."""
    from edgeai.bench.plots import write_plots

    if not any(r["results"] for r in results):
        raise BadInput("nothing to compare: the files hold no results",
                       "pass result files from `edgeai bench llm`, or add --references")
    out_dir = Path(out_dir)
    md = out_dir / "compare.md"
    atomic_write(md, compare_markdown(results))
    return [md, *write_plots(results, out_dir)]


def dump_llama_bench(result: dict, path: Path) -> Path:
    """Write a result's rows as llama-bench `-o json` (bench/importers.export_llama_bench)."""
    from edgeai.bench.importers import export_llama_bench

    atomic_write(Path(path), json.dumps(export_llama_bench(result), indent=2) + "\n")
    return Path(path)
