"""PII: find it, and redact it (reversibly, for one reply) or for good.

Boundary: text -> `Entity`s (kind, span, value) and back. Kinds: email, phone, card (13-19
digits that pass Luhn and start like a card network's number), iban (the country's length and
mod-97), ssn (US: area not 000/666/9xx, group not 00, serial not 0000; nine bare digits only next
to "SSN"/"social security"), secret (`keys.find_secrets`: detect-secrets' plugins). Checksums
keep order numbers, version strings, UUIDs and hashes out. `redact` replaces each entity with a
numbered placeholder (`[EMAIL_1]`) and returns the mapping `restore` needs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from edgeai.guard.keys import find_secrets

KINDS = ("email", "phone", "card", "iban", "ssn", "secret")

_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,24}\b")
_CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
_SSN = re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}([- ])(?!00)\d{2}\1(?!0000)\d{4}(?![\d-])")
_SSN_BARE = re.compile(r"(?i)\b(?:ssn|social security(?: number| no\.?)?|social)\b\D{0,20}"
                       r"((?!000|666|9\d\d)\d{3}(?!00)\d{2}(?!0000)\d{4})\b")
_PHONES = [
    # international: +CC then 2-6 groups
    re.compile(r"(?<![\w+])\+\d{1,3}(?:[ .-]?\(\d{1,4}\))?(?:[ .-]?\d{1,5}){2,6}(?!\d)"),
    # North American: (415) 555-0132, 212-555-0187, 212.555.0199
    re.compile(r"(?<![\w-])(?:\(\d{3}\) ?|\d{3}[-.])\d{3}[-.]\d{4}(?![\w-])"),
    # a national number with a trunk 0: 020 7946 0018, 0612 345 678
    re.compile(r"(?<![\w.-])0\d{2,4}[ -]\d{3,4}[ -]?\d{3,4}(?![\w.-])"),
    # digits right after a phone word
    re.compile(r"(?i)\b(?:phone|tel|telephone|mobile|cell|call me at|fax|whatsapp)\b\.?:?\s*"
               r"(\+?[\d][\d ()./-]{6,18}\d)"),
]
# IBAN lengths by country (the common ones; others: any length that passes mod-97)
_IBAN_LENGTH = {"AD": 24, "AT": 20, "BE": 16, "BG": 22, "CH": 21, "CY": 28, "CZ": 24, "DE": 22, "DK": 18,
                "EE": 20, "ES": 24, "FI": 18, "FR": 27, "GB": 22, "GR": 27, "HR": 21, "HU": 28, "IE": 22,
                "IS": 26, "IT": 27, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MT": 31, "NL": 18,
                "NO": 15, "PL": 28, "PT": 25, "RO": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TR": 26}
_CARD_START = re.compile(r"^(?:4|5[1-5]|2[2-7]|3[47]|3[0689]|6(?:011|5|4[4-9]|22)|35|62|81)")


@dataclass(frozen=True)
class Entity:
    kind: str
    start: int
    end: int
    value: str


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(compact: str) -> bool:
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}", compact):
        return False
    moved = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def _cards(text: str) -> list[Entity]:
    found = []
    for m in _CARD.finditer(text):
        raw = m.group(0)
        digits = re.sub(r"\D", "", raw)
        if 13 <= len(digits) <= 19 and _CARD_START.match(digits) and luhn_ok(digits) and len(set(digits)) > 1:
            found.append(Entity("card", m.start(), m.end(), raw))
    return found


def _ibans(text: str) -> list[Entity]:
    found = []
    for m in _IBAN.finditer(text):
        raw = m.group(0)
        want = _IBAN_LENGTH.get(raw[:2])
        lengths = [want] if want else range(34, 14, -1)
        for length in lengths:
            # walk the raw text until `length` characters that are not spaces are taken
            taken, end = 0, 0
            while end < len(raw) and taken < length:
                taken += raw[end] != " "
                end += 1
            if taken == length and iban_ok(raw[:end].replace(" ", "")):
                found.append(Entity("iban", m.start(), m.start() + end, raw[:end]))
                break
    return found


def _phones(text: str) -> list[Entity]:
    found = []
    for regex in _PHONES:
        for m in regex.finditer(text):
            group = 1 if regex.groups else 0
            value = m.group(group).rstrip(" .-/")
            digits = re.sub(r"\D", "", value)
            if 7 <= len(digits) <= 15 and len(set(digits)) > 2:
                found.append(Entity("phone", m.start(group), m.start(group) + len(value), value))
    return found


def find_pii(text: str, kinds: tuple[str, ...] = KINDS) -> list[Entity]:
    """Every entity in the text, in order; where two overlap, the first-found kind wins
    (secret, email, iban, card, ssn, phone: the most specific first)."""
    candidates: list[Entity] = []
    if "secret" in kinds:
        candidates += [Entity("secret", s, e, text[s:e]) for s, e in find_secrets(text)]
    if "email" in kinds:
        candidates += [Entity("email", m.start(), m.end(), m.group(0)) for m in _EMAIL.finditer(text)]
    if "iban" in kinds:
        candidates += _ibans(text)
    if "card" in kinds:
        candidates += _cards(text)
    if "ssn" in kinds:
        candidates += [Entity("ssn", m.start(), m.end(), m.group(0)) for m in _SSN.finditer(text)]
        candidates += [Entity("ssn", m.start(1), m.end(1), m.group(1)) for m in _SSN_BARE.finditer(text)]
    if "phone" in kinds:
        candidates += _phones(text)
    kept: list[Entity] = []
    for entity in candidates:  # the first claim on a span wins; longer secrets over their parts
        if not any(entity.start < k.end and k.start < entity.end for k in kept):
            kept.append(entity)
    return sorted(kept, key=lambda e: e.start)


@dataclass(frozen=True)
class Redacted:
    text: str
    entities: tuple[Entity, ...]
    mapping: dict[str, str]  # placeholder -> original value

    @property
    def kinds(self) -> list[str]:
        return sorted({e.kind for e in self.entities})


def redact(text: str, entities: list[Entity] | None = None) -> Redacted:
    """Each entity replaced by `[KIND_n]` (the same value gets the same placeholder)."""
    entities = find_pii(text) if entities is None else entities
    mapping: dict[str, str] = {}
    by_value: dict[tuple[str, str], str] = {}
    out, at = [], 0
    for e in sorted(entities, key=lambda e: e.start):
        key = (e.kind, e.value)
        if key not in by_value:
            count = sum(1 for k in by_value if k[0] == e.kind) + 1
            by_value[key] = f"[{e.kind.upper()}_{count}]"
            mapping[by_value[key]] = e.value
        out.append(text[at:e.start])
        out.append(by_value[key])
        at = e.end
    out.append(text[at:])
    return Redacted("".join(out), tuple(entities), mapping)


def restore(text: str, mapping: dict[str, str]) -> str:
    """Placeholders back to their values (a reply that repeats `[EMAIL_1]` gets the address)."""
    if not mapping:
        return text
    return re.sub(r"\[(?:" + "|".join(k.upper() for k in KINDS) + r")_\d+\]",
                  lambda m: mapping.get(m.group(0), m.group(0)), text)
