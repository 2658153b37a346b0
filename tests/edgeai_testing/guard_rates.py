"""Detection and false-positive rates of each layer over an evaluation set (shared by the tests,
the held-out report and bench/guard.py)."""

from __future__ import annotations

from edgeai.guard import injection, moderation
from edgeai.guard.pii import find_pii


def _source(record: dict) -> str:
    return "passage" if record["source"] == "passage" else "user"


def fires(layer: str, record: dict) -> bool:
    """Whether a layer's detector fires on a record's text."""
    if layer == "injection":
        return injection.detect(record["text"], _source(record)) is not None
    if layer == "moderation":
        return bool(moderation.check(record["text"]))
    return bool(find_pii(record["text"]))


def detection_rate(layer: str, attacks: list[dict]) -> tuple[float, list[str]]:
    """(share of the layer's attacks detected, ids missed)."""
    mine = [r for r in attacks if r["layer"] == layer and r["attack"]]
    missed = [r["id"] for r in mine if not fires(layer, r)]
    return 1 - len(missed) / len(mine), missed


def false_positive_rate(layer: str, clean: list[dict]) -> tuple[float, list[str]]:
    """(share of ALL clean records the layer fires on, their ids): every clean text is one a
    layer must let through, whichever layer it was written to tempt."""
    flagged = [r["id"] for r in clean if fires(layer, r)]
    return len(flagged) / len(clean), flagged


def pii_recall(attacks: list[dict]) -> tuple[float, list[str]]:
    """Entity-level recall: an entity counts when a found entity of its kind overlaps it."""
    total, missed = 0, []
    for r in attacks:
        if r["layer"] != "pii":
            continue
        found = find_pii(r["text"])
        for e in r.get("entities", []):
            total += 1
            start = r["text"].index(e["value"])
            end = start + len(e["value"])
            if not any(f.kind == e["kind"] and f.start < end and start < f.end for f in found):
                missed.append(f"{r['id']}:{e['kind']}")
    return (1 - len(missed) / total if total else 0.0), missed
