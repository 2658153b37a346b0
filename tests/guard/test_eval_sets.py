"""The shipped evaluation sets are what they claim: the schema, the sizes, every kind of PII,
checksums that hold (cards: Luhn, IBANs: mod-97) and clean look-alikes that do not."""

from __future__ import annotations

import re

from edgeai.guard.pii import KINDS, iban_ok, luhn_ok


def test_the_sets_follow_the_schema(attacks, clean):
    ids = [r["id"] for r in attacks + clean]
    assert len(ids) == len(set(ids))
    for r in attacks + clean:
        assert r["layer"] in ("injection", "pii", "moderation")
        assert r["source"] in ("user", "passage", "output")
        assert isinstance(r["text"], str) and r["text"]
        assert r["attack"] is (r in attacks)
        if r["layer"] == "pii":
            for e in r["entities"]:
                assert e["kind"] in KINDS and e["value"] in r["text"]


def test_the_sets_are_big_enough_and_cover_every_kind(attacks, clean):
    layers = ("injection", "pii", "moderation")
    by_layer = {layer: [r for r in attacks if r["layer"] == layer] for layer in layers}
    sizes = {layer: len(by_layer[layer]) for layer in layers}
    assert sizes["injection"] >= 80 and sizes["pii"] >= 50 and sizes["moderation"] >= 25
    assert len(clean) >= 120
    assert {r["source"] for r in by_layer["injection"]} == {"user", "passage"}
    assert {e["kind"] for r in by_layer["pii"] for e in r["entities"]} == set(KINDS)


def test_card_and_iban_checksums_hold_in_attacks_and_fail_in_clean(attacks, clean):
    entities = [e for r in attacks if r["layer"] == "pii" for e in r["entities"]]
    cards = [re.sub(r"\D", "", e["value"]) for e in entities if e["kind"] == "card"]
    ibans = [e["value"].replace(" ", "") for e in entities if e["kind"] == "iban"]
    assert len(cards) >= 8 and all(luhn_ok(c) for c in cards)
    assert len(ibans) >= 8 and all(iban_ok(i) for i in ibans)
    # the clean set's card-like numbers are there to fail Luhn
    lookalikes = [re.sub(r"\D", "", m) for r in clean for m in re.findall(r"(?:\d[ -]?){15}\d", r["text"])]
    lookalikes = [d for d in lookalikes if len(set(d)) > 1]  # a row of zeros is a placeholder
    assert lookalikes and not any(luhn_ok(d) for d in lookalikes)
