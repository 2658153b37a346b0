"""A retrieval corpus of the three ways retrieval loses what a passage means (issue 17, item 5).

`build_meaning_corpus(root)` writes synthetic documents of each kind and copies a real public
corpus beside them; `load_questions()` reads the committed questions
(`tests/rag/data/meaning_questions.tsv`: question, expected snippet, file, kind). The kinds:

- `heading`: the fact is stated only in a heading, over body text that does not repeat it
  (Markdown and HTML with heading tags);
- `structure`: the document's structure is not in markup: section titles written as ordinary
  lines, HTML without <h*> tags, text exported from other tools;
- `long`: a short fact inside a long passage, competing with passages that merely share its
  vocabulary.

The public corpus is Debian's licence texts, `/usr/share/common-licenses` (package base-files,
Essential: on every Debian and Ubuntu install): plain text whose section titles are ordinary
lines, and licences that share most of their vocabulary. A few hundred passages. Where that
folder is missing (macOS, another distribution) `LICENSES_MISSING` says why and the questions
over it are left out by `load_questions(with_licenses=False)`.

A question is found when one of the top k hits comes from its file and holds the expected
snippet in its heading or its text (`found_in`), case and whitespace ignored.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

LICENSES_DIR = Path("/usr/share/common-licenses")
LICENSES = ("GPL-3", "Apache-2.0", "MPL-2.0", "GFDL-1.3", "LGPL-2.1", "Artistic")
LICENSES_MISSING = (f"the public licence corpus ({LICENSES_DIR}, Debian's base-files package) is not "
                    "on this machine")
QUESTIONS_FILE = Path(__file__).resolve().parents[1] / "rag" / "data" / "meaning_questions.tsv"
KINDS = ("heading", "structure", "long")


@dataclass(frozen=True)
class MeaningQuestion:
    question: str
    expected: str
    file: str  # relative to the corpus root, POSIX separators
    kind: str


ESPRESSO_MD = """# Aurelis K7 espresso machine — owner's notes

These notes came with the machine from the shop in Vellmark.

## Warranty — two years from delivery

Register the machine on the Aurelis site and keep the receipt with the box. Repairs are booked
through the service desk, which answers within a working day.

## Descaling every 40 days

Use the Aurelis citric descaler and run the programme with the steam wand open. Rinse the tank
twice afterwards so no taste of citrus is left.

## Pump pressure: 15 bar

The vibration pump is loud for the first few shots; that settles after a week of daily use.

## Grinder burrs last 300 kilograms

Replace both burrs together and recalibrate the dose with the small hex key from the box.
"""

LEASE_HTML = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Lease</title></head><body>
<h1>Lease of 14 Quay Street, Orrin</h1>
<p>Between the Harlow estate and the tenant named in schedule A.</p>
<h2>Rent due on the 3rd of each month</h2>
<p>Payments go to the account listed in schedule B. Late payment incurs the fee set out in the
schedule of charges.</p>
<h2>Deposit: 1,850 florins</h2>
<p>The deposit is held by the letting agent in a protected scheme and returned at the end of the
tenancy, less any agreed deductions.</p>
<h2>Notice period — 60 days</h2>
<p>Either party may end the lease by writing to the other at the addresses in schedule A.</p>
<h3>Pets allowed: one cat</h3>
<p>Other animals need the landlord's consent in writing.</p>
</body></html>
"""

# exported from a word processor: the titles are ordinary lines, numbered and in capitals
HANDBOOK_TXT = """BRANNOCK LOGISTICS STAFF HANDBOOK
Revision 9, issued by the People team

1. WORKING HOURS

The standard week is 38 hours, worked Monday to Friday between 07:00 and 19:00. Team leads agree
core hours with their teams and record them in the rota tool, so that every shift on the loading
floor is covered. Changes to a rota are announced at least a week ahead, except in an emergency.
Staff who work from home on agreed days keep the same core hours and stay reachable by phone.

2. PROBATION: SIX MONTHS

New starters are reviewed by their team lead at the midpoint and again at the end. The review
looks at attendance, safety on the floor and how well the starter works with the team. A starter
who needs more time can be given one extension, agreed in writing with the People team.

3. OVERTIME

Hours beyond the standard week are paid at 1.5 times the base rate, or taken as time off in lieu
within three months. Overtime must be approved by a team lead before it is worked, and it is
recorded in the rota tool on the same day. Night shifts count as overtime only past the agreed
hours of the night rota.

4. ANNUAL LEAVE — 27 DAYS PLUS PUBLIC HOLIDAYS

Leave is booked in the rota tool and approved by the team lead. Up to five unused days may be
carried into the next year; the rest lapse on the last day of December. Leave in the peak weeks
before the winter holidays is shared out by a draw held every September.

5. EXPENSES

Claims are filed in the expenses portal with a photo of each receipt. Meals on business travel
are reimbursed up to 32 florins a day, and hotel bookings go through the travel desk. Claims older
than ninety days are not paid, so file them when you return from the trip.

6. SICKNESS

Call your team lead before the start of your shift on the first day of sickness. From the fourth
day a note from a doctor is needed. Return-to-work talks are short and held on the first day back.
"""

# an HTML page without a single heading tag: titles are bold paragraphs and styled divs
SHOP_HTML = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Velden Home — help</title></head><body>
<div class="page">
<p><b>Returns within 30 days</b></p>
<p>Send the item back in its original packaging with the returns slip from your parcel. Refunds go
to the card you paid with once the warehouse has checked the item, which usually takes a few
working days after it arrives.</p>
<div class="title">Shipping — free over 60 florins</div>
<p>Orders leave the warehouse within two working days. Parcels travel with Norrbend Freight, who
send a tracking link by email on the day of dispatch; larger furniture is delivered by two people
on a booked day.</p>
<p><strong>Gift cards never expire</strong></p>
<p>A gift card can be spent in the shop or online, in as many orders as you like, until its balance
is used up. Lost cards can be blocked by the customer service team if you have the receipt.</p>
</div>
</body></html>
"""

# plain text from a minutes tool: an underlined title, then section titles as ordinary lines
MINUTES_TXT = """Harbour Board — minutes of 12 May 2031
======================================

Attendees
Mira Olsk (chair), Davin Roe, Petra Illing, Sunniva Tarr

Dredging budget approved at 240,000 florins

The board discussed the silting of the inner basin, which has narrowed the channel used by the
ferries at low tide. The harbourmaster presented three quotes; the board chose the contractor with
the shortest schedule. Work starts after the summer regatta so that the moorings stay open.

Lighthouse repairs

The lamp at Gullhead will be replaced in September by the coastal authority's own crew. Until then
the backup light stays in service and the notice to mariners is renewed every week.

Next meeting

The board meets again on 9 June 2031 at the customs house.
"""

# long passages that share every word of the questions but one detail; the fact sits in the middle
DEPOT_TXT = """Corvel depot: annual site review

The Corvel depot sits on the ring road east of the river and serves the whole northern district.
Its yard, workshops and the office block were rebuilt after the flood, and the site has been in
full use again for three years. The generator house, the fuel store and the tank farm stand at the
north end of the yard, away from the loading area, as the fire service asked. The depot's backup
generator runs for 11 hours on a full tank, long enough to keep the cold store and the office
systems running through any outage the district has seen. Staff from the workshop check the site
every week, and the review below follows the same order as their checklist.

Generators at Corvel are serviced twice a year by the manufacturer's engineers. Each service
covers the oil, the filters, the coolant and a load test of the generator under full load for an
hour. The tank is inspected for water and sediment, and the fuel lines from the tank to the
generator are pressure tested. The generator log records every start, every run and every service,
with the hours on the generator's meter, so the review can compare the generator's hours with
last year's. This year the generator ran for a total of forty hours during tests and outages, and
the tank was refilled four times. No fault was found on the generator or the tank.

Fuel deliveries to the depot are booked a week ahead and arrive on Tuesday mornings. The depot buys
its diesel from Tessaly Fuels under a three-year contract, and the tanker fills the main tank and
the generator tank in one visit. The fuel store keeps a full tank for the vehicles and a full tank
for the generator at all times; the fuel level of each tank is read daily and written in the fuel
log. Deliveries were on time all year except in the week of the storm, when the road was closed.
The fuel contract, the tank readings and the delivery notes were checked by the auditors in March.

The loading area has nineteen loading bays along the south side of the yard, each with its own
dock leveller and door. Lorries queue on the ring road slip lane and are called forward by the
yard office. The forklifts are charged overnight in the charging room, and the overhead crane in
the heavy goods hall is rated for 6.5 tonnes and inspected every six months. Loads heavier than the
forklifts can lift are moved by the crane, and loads heavier than the crane can lift are refused at
the gate. The yard office keeps the load records, the crane inspections and the forklift checks.
"""

# the decoy: the same vocabulary (generator, tank, hours, fuel, crane, loads) about another site
GENERATORS_MD = """# Backup power at the Havel depot

The Havel depot's generator is smaller than most: on a full tank it runs for about six hours at
full load, and for longer when only the office is powered. The generator is tested every month
for an hour under load, and the tank is topped up after every test so that the generator always
starts with a full tank. Generators, tanks and fuel lines are inspected by the site engineer.

## Fuel and loads

The fuel tank holds enough diesel for a day of normal running. Loads in the yard are moved by two
forklifts and a small crane; the crane's load limit and the forklifts' limits are posted in the
yard office. Heavy loads are booked in advance so that the crane is free when the lorry arrives.
"""


def licenses_available() -> bool:
    return all((LICENSES_DIR / name).is_file() for name in LICENSES)


def build_meaning_corpus(root: Path, *, with_licenses: bool = True) -> Path:
    """Write the synthetic documents under `root` (and copy the licence texts to `licenses/`)."""
    root = Path(root)
    files = {
        "care/aurelis-k7.md": ESPRESSO_MD,
        "contracts/orrin-lease.html": LEASE_HTML,
        "exports/staff-handbook.txt": HANDBOOK_TXT,
        "web/velden-help.html": SHOP_HTML,
        "exports/harbour-minutes.txt": MINUTES_TXT,
        "reports/corvel-depot-review.txt": DEPOT_TXT,
        "reports/havel-backup-power.md": GENERATORS_MD,
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    if with_licenses and licenses_available():
        (root / "licenses").mkdir(parents=True, exist_ok=True)
        for name in LICENSES:
            # .txt: the text extractor reads them (a name without a suffix is sniffed the same way)
            shutil.copyfile(LICENSES_DIR / name, root / "licenses" / f"{name}.txt")
    return root


def load_questions(*, with_licenses: bool = True) -> list[MeaningQuestion]:
    questions = []
    for line in QUESTIONS_FILE.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        question, expected, file, kind = line.split("\t")
        if kind not in KINDS:
            raise ValueError(f"{QUESTIONS_FILE}: unknown kind {kind!r}")
        if with_licenses or not file.startswith("licenses/"):
            questions.append(MeaningQuestion(question, expected, file, kind))
    return questions


def _normal(text: str) -> str:
    return " ".join(text.lower().split())


def found_in(question: MeaningQuestion, hits) -> int | None:
    """The 1-based rank of the first hit that answers `question`, or None."""
    for rank, hit in enumerate(hits, 1):
        where = _normal((getattr(hit, "heading", None) or "") + " " + hit.text)
        if Path(hit.file).as_posix().endswith(question.file) and _normal(question.expected) in where:
            return rank
    return None


def measure(workdir: Path, *, k: int = 5, with_licenses: bool = True) -> dict[str, int | None]:
    """Index the corpus into a fresh collection under `workdir` and ask every question: question ->
    rank of the first answering hit (None: not in the top k)."""
    from edgeai.config import Settings
    from edgeai.rag import api

    settings = Settings(home=Path(workdir) / "home")
    root = build_meaning_corpus(Path(workdir) / "docs", with_licenses=with_licenses)
    api.ingest(settings, "meaning", [root])
    return {q.question: found_in(q, api.search(settings, "meaning", q.question, k))
            for q in load_questions(with_licenses=with_licenses and licenses_available())}


def recall_by_kind(ranks: dict[str, int | None], questions: list[MeaningQuestion]) -> dict[str, float]:
    """recall@k per kind and overall ("all"), over the questions `ranks` holds."""
    asked = [q for q in questions if q.question in ranks]
    out = {}
    for kind in (*KINDS, "all"):
        chosen = [q for q in asked if kind in ("all", q.kind)]
        out[kind] = sum(ranks[q.question] is not None for q in chosen) / len(chosen) if chosen else 0.0
    return out
