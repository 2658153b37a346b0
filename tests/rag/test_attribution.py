"""Attribution: each cited sentence checked against the passage it cites; markers kept, moved,
narrowed to the supporting lines, or marked "[?]"; every placed passage stays in the record."""

from __future__ import annotations

from edgeai.chat.rag import RagPlan, finish
from edgeai.rag.attribution import UNSUPPORTED, attribute
from edgeai.rag.context import Source, source_from_dict

CONTRACT = "\n".join([
    "Service agreement between Northwind Logistics and Harbor Freight Ltd.",
    "Parties: Northwind Logistics (the client) and Harbor Freight Ltd (the carrier).",
    "The carrier moves the client's containers between Rotterdam and Gdansk.",
    "Invoices are paid within 30 days of delivery.",
    "The renewal of the Northwind agreement is due on 14 September 2032.",
    "Either party may end the agreement with 90 days' written notice.",
    "Disputes go to the courts of Rotterdam.",
    "The carrier insures every container for its declared value.",
    "Signed in Rotterdam by both parties.",
    "Annex A lists the container types.",
])
TMUX = ("Copyright (c) 2007 Nicholas Marriott <nicholas.marriott@gmail.com>\n"
        "Permission to use, copy, modify, and distribute this software for any purpose with or\n"
        "without fee is hereby granted, provided that the above copyright notice appear in all copies.")
RIVERS = "The Sylvan river rises in the northern hills and flows south for 240 km."
QUESTION = "When is the renewal of the Northwind agreement due?"


def placed() -> list[Source]:
    return [Source(1, "/docs/contract.txt", None, "lines 1-10", CONTRACT, 11),
            Source(2, "/docs/rivers.txt", None, "line 1", RIVERS, 12),
            Source(3, "/licences/tmux-copyright.txt", None, "lines 148-150", TMUX, 13)]


def plan(sources: list[Source]) -> RagPlan:
    return RagPlan("c", QUESTION, [], [], lambda f: None, sources=sources)


def test_the_issues_example_a_marker_on_the_wrong_passage_moves_to_the_one_that_holds_the_fact():
    answer, record = finish(plan(placed()), "The renewal is due on 14 September 2032 [3].")
    assert answer == "The renewal is due on 14 September 2032 [1]."
    first = record["sources"][0]
    assert (first["number"], first["file"], first["cited"]) == (1, "/docs/contract.txt", True)


def test_the_cited_span_is_narrowed_to_the_line_that_holds_the_fact():
    answer, record = finish(plan(placed()), "The renewal is due on 14 September 2032 [1].")
    assert answer == "The renewal is due on 14 September 2032 [1]."
    cited = source_from_dict(record["sources"][0])
    assert (cited.span, cited.passage_span, cited.where) == ("line 5", "lines 1-10", "line 5")
    assert cited.text == CONTRACT  # the whole passage stays readable around the cited line
    assert cited.label == "[1] contract.txt line 5"


def test_a_citation_of_the_right_file_but_the_wrong_lines_moves_and_narrows():
    tail = Source(1, "/docs/contract.txt", None, "lines 9-10", "\n".join(CONTRACT.split("\n")[8:]), 21)
    head = Source(2, "/docs/contract.txt", None, "lines 1-8", "\n".join(CONTRACT.split("\n")[:8]), 20)
    answer, record = finish(plan([tail, head]), "It is due on 14 September 2032 [1].")
    assert answer == "It is due on 14 September 2032 [1]."  # renumbered: the moved one is cited first
    cited = source_from_dict(record["sources"][0])
    assert (cited.chunk_id, cited.span, cited.cited) == (20, "line 5", True)


def test_a_sentence_no_passage_supports_is_marked():
    answer, record = finish(plan(placed()), "The renewal is due on 14 September 2032 [1]. "
                                            "The carrier was founded in 1888 by Olaf Brenner [2].")
    assert answer == f"The renewal is due on 14 September 2032 [1]. " \
                     f"The carrier was founded in 1888 by Olaf Brenner {UNSUPPORTED}."
    assert [s["cited"] for s in record["sources"]] == [True, False, False]


def test_a_correct_citation_stays_untouched():
    text = "The Sylvan flows south for 240 km [2]. The renewal is due on 14 September 2032 [1]."
    answer, sources = attribute(text, placed(), QUESTION)
    assert answer == text
    assert [s.number for s in sources] == [1, 2, 3] and sources[1] == placed()[1]


def test_every_passage_placed_stays_viewable_cited_ones_first():
    answer, record = finish(plan(placed()), "The Sylvan flows south for 240 km [2].")
    assert answer == "The Sylvan flows south for 240 km [1]."
    shown = [(s["number"], s["file"].rsplit("/", 1)[1], s["cited"]) for s in record["sources"]]
    assert shown == [(1, "rivers.txt", True), (2, "contract.txt", False), (3, "tmux-copyright.txt", False)]
    assert record["cited"]


def test_a_quote_after_its_marker_is_checked_too():
    # the 0.5B model often answers with "[n] quoted text" lines
    text = "[3] The renewal of the Northwind agreement is due on 14 September 2032.\n[1] Copyright (c) 2007"
    answer, _ = attribute(text, placed(), QUESTION)
    assert answer == ("[1] The renewal of the Northwind agreement is due on 14 September 2032.\n"
                      "[3] Copyright (c) 2007")


def test_a_trailing_marker_belongs_to_the_sentence_before_it():
    answer, _ = attribute("It is due on 14 September 2032. [2]", placed(), QUESTION)
    assert answer == "It is due on 14 September 2032. [1]"


def test_a_number_no_passage_states_is_not_saved_by_similar_words():
    answer, _ = attribute("The renewal of the Northwind agreement is due on 3 May 2040 [1].", placed(),
                          QUESTION, similarity=lambda a, b: 1.0)
    assert answer == f"The renewal of the Northwind agreement is due on 3 May 2040 {UNSUPPORTED}."


def test_the_embedder_decides_where_the_words_alone_are_unsure():
    text = "The client can terminate the contract on a quarter's notice [2]."
    calls = []

    def similarity(a: str, b: str) -> float:
        calls.append(b)
        return 0.8 if b == CONTRACT else 0.1

    answer, sources = attribute(text, placed(), QUESTION, similarity=similarity)
    assert answer == "The client can terminate the contract on a quarter's notice [1]."
    assert calls and CONTRACT in calls
    assert attribute(text, placed(), QUESTION)[0].endswith(f"notice {UNSUPPORTED}.")  # words alone


def test_markers_inside_code_and_unjudgeable_ones_are_left_alone():
    text = "Run `x[3]` first.\n\n[1] [2]"
    assert attribute(text, placed(), QUESTION)[0] == text
