"""The attribution evaluation: do a reply's citation markers point at a passage that holds the fact?

Every question of the test corpus (`corpus.QUESTIONS`, 28, each with the snippet that answers it)
goes through the real chat engine's RAG turn (`chat.turn.run_turn` -> retrieval, the fenced
prompt, the model, `chat.rag.finish`) on the default model, greedy. A marker is right when the
span it cites (the source's lines as recorded with the reply, else its whole text) contains the
expected answer snippet, compared after collapsing whitespace and case ("question markers").
That strict count also judges relevance: the 0.5B model often lists several verbatim quotes, each
with its own (right or wrong) marker, and a quote about another fact is counted wrong however it
is cited. So a second count judges attribution alone ("fact markers"): a marker attached to a
sentence that states one of the corpus's known facts (any `QUESTIONS` snippet) is right when the
span it cites contains that fact; markers on sentences stating no known fact are not judged.
Also counted: answers that state the fact, answers with no marker, "[?]" marks.

Paired: each answer is generated once and finished both ways, the old way (markers only checked
to exist) and the current one, so the two counts judge the same replies.

Run (about 5 minutes on 2 cores):
    PYTHONPATH=tests .venv/bin/python -m edgeai_testing.attribution [--out results.json]
`tests/rag/test_attribution_eval.py` (slow, model) runs the same and holds the share.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeai.rag.context import _CITATION
from edgeai_testing.corpus import QUESTIONS, build_corpus

COLLECTION = "corpus"
UNSUPPORTED = "[?]"
_MARKER = _CITATION  # the markers the app itself reads as citations (group 2: the numbers)


FACTS = tuple(sorted({" ".join(q.answer.split()).lower() for q in QUESTIONS}))


def claims(text: str) -> list[tuple[str, list[int]]]:
    """(sentence without markers, the numbers its markers name): a reply cut at line ends and
    sentence ends; a piece that is only markers ("... 5 minutes. [1]") belongs to the one before."""
    out: list[tuple[str, list[int]]] = []
    for line in text.split("\n"):
        for piece in re.split(r"(?<=[.!?])\s+", line):
            numbers = [int(n) for m in _MARKER.finditer(piece) for n in re.findall(r"\d+", m.group(2))]
            claim = _MARKER.sub("", piece).strip(" .,;:")
            if not claim and out:
                out[-1][1].extend(numbers)
            elif claim or numbers:
                out.append((claim, numbers))
    return out


def normal(text: str) -> str:
    return " ".join(text.split()).lower()


def cited_text(source: dict[str, Any]) -> str:
    """The text a source's recorded span covers: its lines when the record narrowed them (the
    passage's own span says which line its text starts on), else the whole passage."""
    text = source["text"]
    span, passage = source.get("span") or "", source.get("passage_span") or ""
    narrowed, whole = _lines(span), _lines(passage)
    if narrowed and whole:
        rows = text.split("\n")
        return "\n".join(rows[narrowed[0] - whole[0]: narrowed[1] - whole[0] + 1])
    return text


def _lines(span: str) -> tuple[int, int] | None:
    m = re.fullmatch(r"(?:lines?\s+)?(\d+)(?:\s*[-–]\s*(\d+))?", span.strip())
    return (int(m.group(1)), int(m.group(2) or m.group(1))) if m else None


@dataclass
class Tally:
    answers: int = 0
    markers: int = 0
    right: int = 0
    unmarked_answers: int = 0
    stated: int = 0  # answers whose text contains the fact
    cited_right: int = 0  # answers with at least one marker on a passage holding the fact
    unsupported: int = 0  # "[?]" marks
    fact_markers: int = 0  # markers on a sentence stating a known fact
    fact_right: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def share(self) -> float:
        return self.right / self.markers if self.markers else 0.0

    def add(self, question: Any, text: str, record: dict[str, Any], raw: str) -> None:
        by_number = {s["number"]: s for s in record.get("sources", [])}
        fact = normal(question.answer)
        numbers = [int(n) for m in _MARKER.finditer(text) for n in re.findall(r"\d+", m.group(2))]
        good = [n for n in numbers if n in by_number and fact in normal(cited_text(by_number[n]))]
        self.answers += 1
        self.markers += len(numbers)
        self.right += len(good)
        self.unmarked_answers += not numbers
        self.stated += fact in normal(text)
        self.cited_right += bool(good)
        self.unsupported += text.count(UNSUPPORTED)
        judged = []
        for claim, marked in claims(text):
            facts = [f for f in FACTS if f in normal(claim)]
            if not facts:
                continue
            for n in marked:
                ok = n in by_number and any(f in normal(cited_text(by_number[n])) for f in facts)
                self.fact_markers += 1
                self.fact_right += ok
                judged.append((n, ok))
        self.rows.append({"question": question.question, "fact": question.answer, "raw": raw,
                          "reply": text, "markers": numbers, "right": good, "judged": judged,
                          "sources": [(s["number"], Path(s["file"]).name, s.get("span"), s.get("cited"))
                                      for s in record.get("sources", [])]})

    @property
    def fact_share(self) -> float:
        return self.fact_right / self.fact_markers if self.fact_markers else 0.0

    def summary(self) -> str:
        return (f"question markers: {self.right}/{self.markers} on a passage holding the answer "
                f"({100 * self.share:.1f}%); fact markers: {self.fact_right}/{self.fact_markers} on a "
                f"span holding their sentence's fact ({100 * self.fact_share:.1f}%); {self.answers} answers; "
                f"{self.cited_right} answers cite the fact, {self.stated} state it, "
                f"{self.unmarked_answers} have no marker, {self.unsupported} '[?]' marks")


def unchecked_finish(plan: Any, text: str) -> tuple[str, dict[str, Any]]:
    """`chat.rag.finish` as it was before attribution: markers only checked to exist among the
    sources placed, then renumbered (the "before" of the paired comparison)."""
    from edgeai.rag.context import MARKERS_ONLY_NOTE, markers_only, renumber_citations

    fixed, shown = renumber_citations(text, plan.sources)
    if markers_only(fixed):
        fixed = f"{fixed.strip()}\n\n{MARKERS_ONLY_NOTE}"
    return fixed, plan.record(shown, cited=any(s.cited for s in shown))


def run(home: Path, max_tokens: int = 96, limit: int | None = None, progress=print) -> tuple[Tally, Tally]:
    """Build the corpus under `home`, index it, ask every question through `run_turn`. Returns
    (before, after), paired: the same generated answers, each finished the old way (markers
    only checked to exist) and the current way (`chat.rag.finish`, attribution)."""
    from edgeai.chat import rag as chat_rag
    from edgeai.chat.turn import begin_turn, run_turn
    from edgeai.chatdb import ChatDB
    from edgeai.config import load_settings
    from edgeai.rag import api
    from edgeai.runtime.loaded import LoadedModel
    from edgeai.runtime.loader import load_model
    from edgeai.types import GenParams

    settings = load_settings()
    corpus = build_corpus(home / "docs")
    api.ingest(settings, COLLECTION, [corpus.root])
    backend, spec = load_model(settings)
    model = LoadedModel(backend, spec, spec.id)
    db = ChatDB.in_memory()
    tally, before = Tally(), Tally()
    finished: dict[str, Any] = {}
    real_finish = chat_rag.finish

    def finish(plan, text):  # the plan and the raw answer, for the "before" of the same answer
        finished.update(plan=plan, raw=text)
        return real_finish(plan, text)

    chat_rag.finish = finish
    try:
        for question in QUESTIONS[:limit]:
            conv = db.create_conversation("eval")
            conv = db.update_settings(conv.id, rag={"collection": COLLECTION})
            turn = begin_turn(db, conv, question.question, model)
            pieces: list[str] = []
            out = run_turn(turn, model, GenParams(max_tokens=max_tokens, temperature=0), settings,
                           on_text=lambda text, _reasoning, into=pieces: into.append(text), save_state=False)
            if out.status != "done" or out.rag is None:
                raise RuntimeError(f"{question.question!r}: {out.status} {out.error}")
            tally.add(question, out.text, out.rag, "".join(pieces))
            before.add(question, *unchecked_finish(finished["plan"], finished["raw"]), "".join(pieces))
            progress(f"{len(tally.rows):2d} {tally.rows[-1]['markers']}->{tally.rows[-1]['right']} "
                     f"{out.text!r}")
    finally:
        chat_rag.finish = real_finish
        backend.close()
        db.close()
    return before, tally


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write every answer and its sources as JSON")
    parser.add_argument("--limit", type=int, help="only the first N questions")
    args = parser.parse_args(argv)
    import os

    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("EDGEAI_HOME", str(Path(tmp) / "home"))
        before, tally = run(Path(tmp), limit=args.limit)
    if args.out:
        args.out.write_text(json.dumps({"before": before.rows, "after": tally.rows}, indent=1))
    print("before (markers only checked to exist): " + before.summary())
    print("after (attribution):                    " + tally.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
