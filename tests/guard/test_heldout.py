"""The held-out attack set (written apart, never read while tuning): its rates are REPORTED here,
never pinned. Run `pytest -s tests/guard/test_heldout.py` to see them; skipped when the file is
not there. The test prints aggregate rates only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from edgeai_testing.guard_rates import detection_rate, pii_recall

HELDOUT = Path(__file__).resolve().parent / "heldout" / "attacks.jsonl"


@pytest.mark.skipif(not HELDOUT.is_file(), reason="no held-out set at tests/guard/heldout/attacks.jsonl")
def test_report_the_held_out_rates(capsys):
    records = [json.loads(line) for line in HELDOUT.read_text(encoding="utf-8").splitlines() if line.strip()]
    lines = []
    for layer in ("injection", "moderation", "pii"):
        mine = [r for r in records if r.get("layer") == layer and r.get("attack")]
        if not mine:
            continue
        rate, missed = detection_rate(layer, mine)
        lines.append(f"held-out {layer}: {rate:.1%} detected ({len(mine) - len(missed)}/{len(mine)})")
    if any(r.get("layer") == "pii" and r.get("entities") for r in records):
        recall, missed = pii_recall(records)
        lines.append(f"held-out pii entity recall: {recall:.1%} ({len(missed)} entities missed)")
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    assert lines  # a report was made; the numbers are not pinned
