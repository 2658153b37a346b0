"""Recall@5 on the questions of tests/rag/data/meaning_questions.tsv, per kind and per question.

    .venv/bin/python tests/rag/meaning_recall.py [--write KEY]

indexes tests/edgeai_testing/meaning_corpus.py's documents (and Debian's licence texts) into a
temporary collection with the code as it is, prints each question's rank, recall per kind and
overall; `--write KEY` records the per-question results under KEY ("baseline", "after") in
tests/rag/data/meaning_recall.json, which tests/rag/test_meaning_recall.py pins.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgeai_testing.meaning_corpus import load_questions, measure, recall_by_kind  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "data" / "meaning_recall.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", metavar="KEY", help="record the results under KEY in " + RESULTS.name)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ranks = measure(Path(tmp))
    questions = load_questions()
    for q in questions:
        if q.question in ranks:
            rank = ranks[q.question]
            print(f"{'miss' if rank is None else f'@{rank}':>5}  {q.kind:<9} {q.question}")
    recall = recall_by_kind(ranks, questions)
    print("recall@5: " + " · ".join(f"{kind} {value:.3f}" for kind, value in recall.items())
          + f" ({sum(r is not None for r in ranks.values())}/{len(ranks)})")
    if args.write:
        data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        data[args.write] = {"recall@5": recall, "found": {q: r is not None for q, r in ranks.items()}}
        RESULTS.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
