"""A small mixed-format corpus with invented facts, and a set of files that must be refused.

`build_corpus(root)` writes a 4-page PDF, an HTML article buried in site chrome, a DOCX with
headings and a table, Markdown with headings, a list and a code block, and plain text, some in
nested folders. Every fact is made up (no model can know it), so a right answer proves
retrieval. `QUESTIONS` ask about them in other words than the text uses; each `answer` is a
snippet that occurs in exactly one place of the corpus (compare after collapsing whitespace:
PDF text wraps lines). `build_bad_files(root)` writes the inputs extraction must refuse or
repair, with the reason each must give in `BAD_FILES`.

Bytes are deterministic (fixed dates, ids and zip timestamps), so content hashes are stable.
"""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

FIXED_DATE = dt.datetime(2031, 3, 14, 9, 26, 53, tzinfo=dt.timezone.utc)
PDF = "manuals/kestrel-x9-field-guide.pdf"
HTML = "web/cessaly-gazette/harbor-ferries.html"
DOCX = "reports/2031/greenhouse-trial.docx"
MD = "notes/quorrin-sync.md"
TXT = "notes/archive/2030/kitchen-log.txt"
README = "README.txt"


@dataclass(frozen=True)
class Question:
    question: str
    answer: str  # a snippet of the passage that answers it, unique in the corpus
    file: str  # relative to the corpus root, POSIX separators
    page: int | None = None


@dataclass(frozen=True)
class Corpus:
    root: Path
    files: tuple[str, ...]  # relative POSIX paths of every file written

    def path(self, name: str) -> Path:
        return self.root / name


PDF_PAGES = (
    ("1. Overview",
     "The Kestrel X9 is a survey drone made by Vantorel Aeronautics. It weighs 2.35 kilograms with its "
     "battery fitted. The first unit was assembled at the Lindqvar workshop in the spring of 2029, and "
     "the production line moved to Orsk Bay a year later.\n"
     "The airframe is certified for flights up to an altitude of 3,400 metres above sea level. Above "
     "that height the flight controller refuses to climb further."),
    ("2. Batteries",
     "Each Halvern HB-7 battery pack stores 148 watt-hours of energy. On the standard charging dock an "
     "empty pack is full again after 52 minutes; a field charger needs about twice as long.\n"
     "Spare packs must be stored between 12 and 18 degrees Celsius. Packs left in a hot vehicle lose "
     "capacity permanently and should be returned to the depot in Tarrowgate."),
    ("3. Flight limits",
     "When the measured wind exceeds 38 kilometres per hour, the X9 abandons its mission and flies back "
     "to the point it took off from without any input from the pilot.\n"
     "With a fresh pack and no payload the drone can hover for 47 minutes. Every camera on the gimbal "
     "shortens this by roughly four minutes."),
    ("4. Maintenance",
     "The four propellers are wear parts: replace them after every 90 flight hours, or at once if a "
     "blade is chipped.\n"
     "To install new firmware, insert the amber key (model AK-2) into the service port beneath the "
     "camera gimbal and hold the power button for five seconds. The status light turns violet while "
     "the update runs."),
)

HTML_TEXT = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Harbor ferries of Port Cessaly | Cessaly Gazette</title>
<style>body { font-family: serif } .ad { color: red }</style>
<script>window.trackingId = "CG-TRACK-5531"; function subscribePopup() { return "Subscribe now"; }</script>
</head>
<body>
<header class="site-header"><div class="logo">Cessaly Gazette</div>
<p>Your daily port news since 1887</p>
<form action="/search"><input name="q" placeholder="Search the Gazette"><button>Search</button></form>
</header>
<nav><ul><li><a href="/">Home</a></li><li><a href="/news">News</a></li><li><a href="/sport">Sport</a></li>
<li><a href="/weather">Weather</a></li><li><a href="/subscribe">Subscribe</a></li></ul></nav>
<div class="breadcrumbs" role="navigation"><a href="/">Home</a> &rsaquo; <a href="/travel">Travel</a></div>
<main>
<article>
<header><h1>Harbor ferries of Port Cessaly</h1><p class="byline">By Oona Farrel</p></header>
<p>The <em>Marrowick</em> ferry leaves Port Cessaly every Tuesday at 06:40 and reaches the island
shortly before ten.</p>
<h2>Tickets</h2>
<p>Foot passengers pay at the kiosk on the east quay.</p>
<p>Bicycles: 7 florins return.</p>
<h2>The fleet</h2>
<p>The flagship <strong>Saint Orlaith</strong> was launched in 2024 and has seats for 212 passengers
on two decks.</p>
<div>Harbourmaster: Ines Quarreby</div>
<h3>Weather rules</h3>
<p>Crossings are cancelled when the wave height at the Tollan buoy exceeds 2.8 metres.<br>Check the
board at the terminal.</p>
</article>
</main>
<aside class="related"><h2>Related</h2><ul><li>Lighthouse festival draws record crowds</li>
<li>Rival port cuts ferry fares to 3 florins</li></ul><div class="ad">Advertisement: Dune Motors</div></aside>
<footer><p>&copy; 2031 Cessaly Gazette. All rights reserved.</p><a href="/privacy">Privacy policy</a></footer>
<noscript>Please enable JavaScript to read the comments.</noscript>
</body></html>
"""

MD_TEXT = """---
title: Quorrin sync notes
author: ops
---
# Quorrin sync daemon

These notes cover how the sync daemon gets onto new machines.

## Install

### Linux

Register the machine first:

```sh
qsyncctl enroll --realm=heron
systemctl enable --now qsyncd
```

### Windows

On Windows the service runs under the account QSYNC_SVC and writes its logs to
`C:\\Quorrin\\logs`.

## Network

- Port 7719 must be open for peer discovery.
- Transfers use port 7720 and are encrypted.

## Configuration

The shipped defaults:

```toml
[sync]
interval_seconds = 417
mirror = "tarn-04.quorrin.internal"
```
"""

TXT_TEXT = """Kitchen log, winter 2030

Grandmother Elsbeth's plum cake uses 340 grams of flour and bakes for 55 minutes at 170 degrees.
Let it cool on the rack before cutting.

The pantry key is kept under the blue ceramic owl on the second shelf.
"""

README_TEXT = """Heronfield project archive

Project Heronfield started on 3 March 2030; its budget was 61,000 florins, granted by the Sorrel Trust.
"""

QUESTIONS: tuple[Question, ...] = (
    Question("How heavy is the Kestrel drone including its power pack?", "2.35 kilograms", PDF, 1),
    Question("Where was the very first X9 put together?", "Lindqvar workshop", PDF, 1),
    Question("How high is the Kestrel allowed to fly?", "3,400 metres", PDF, 1),
    Question("What is the energy capacity of one HB-7?", "148 watt-hours", PDF, 2),
    Question("How long does a drained battery take to recharge on the dock?", "52 minutes", PDF, 2),
    Question("At what temperatures should spare batteries be kept?", "between 12 and 18 degrees", PDF, 2),
    Question("What wind speed makes the drone return home by itself?", "38 kilometres per hour", PDF, 3),
    Question("How long can the X9 stay in the air hovering without cargo?", "47 minutes", PDF, 3),
    Question("After how much flying time do the rotors need swapping?", "90 flight hours", PDF, 4),
    Question("What do you plug in to update the drone's software?", "amber key", PDF, 4),
    Question("When does the boat to Marrowick depart each week?", "06:40", HTML),
    Question("How much does it cost to take a bike on the ferry and back?", "7 florins", HTML),
    Question("How many people can travel on the Saint Orlaith at once?", "212 passengers", HTML),
    Question("What sea state causes the crossings to be called off?", "2.8 metres", HTML),
    Question("Who is in charge of the harbour?", "Ines Quarreby", HTML),
    Question("For how long did the greenhouse experiment run?", "143 days", DOCX),
    Question("At what hour were the grow lights switched on?", "05:15", DOCX),
    Question("Which pepper cultivar was grown in the trial?", "Sollan Flame", DOCX),
    Question("How many kilograms of cucumbers did each square metre give?", "22.1", DOCX),
    Question("By how much did irrigation consumption drop compared with last season?", "27 percent", DOCX),
    Question("Which command registers a Linux machine with the sync service?", "qsyncctl enroll", MD),
    Question("Under which user account does the daemon run on Windows?", "QSYNC_SVC", MD),
    Question("How often does the daemon synchronise by default?", "interval_seconds = 417", MD),
    Question("Which host is the default mirror for syncing?", "tarn-04.quorrin.internal", MD),
    Question("What network port has to be reachable so peers can find each other?", "7719", MD),
    Question("How much flour goes into the plum cake?", "340 grams", TXT),
    Question("Where is the key to the pantry hidden?", "blue ceramic owl", TXT),
    Question("How much money was the Heronfield project given?", "61,000 florins", README),
)


def build_corpus(root: Path) -> Corpus:
    root = Path(root)
    files = {
        PDF: _pdf(PDF_PAGES, title="Kestrel X9 Field Guide"),
        HTML: HTML_TEXT.encode("utf-8"),
        DOCX: _greenhouse_docx(),
        MD: MD_TEXT.encode("utf-8"),
        TXT: TXT_TEXT.encode("utf-8"),
        README: README_TEXT.encode("utf-8"),
    }
    for name, data in files.items():
        _write(root / name, data)
    return Corpus(root, tuple(files))


# name -> the reason code `ExtractError.reason` must carry, or None: extracts (with a notice)
BAD_FILES: dict[str, str | None] = {
    "binary.txt": "binary",
    "cp1252.txt": None,
    "utf16.txt": None,
    "empty.txt": "empty",
    "encrypted.pdf": "encrypted",
    "restricted.pdf": None,  # an owner password only: opens with the empty user password
    "scanned.pdf": None,  # no text layer: read by OCR
    "photo.png": None,  # read by OCR
    "corrupt.docx": "corrupt",
    "corrupt.pdf": "corrupt",
}
CP1252_TEXT = "Café crème at the Brûlerie costs 4 € — naïve façade."
UTF16_TEXT = "Über die Größe: 日本語のテキスト, ferry 7 florins."


def build_bad_files(root: Path) -> dict[str, Path]:
    root = Path(root)
    text_pdf = _pdf((("Restricted", "This manual may be read but not edited: code word PELICAN."),),
                    title="Restricted")
    docx = _greenhouse_docx()
    files = {
        "binary.txt": b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 8,
        "cp1252.txt": CP1252_TEXT.encode("cp1252"),
        "utf16.txt": UTF16_TEXT.encode("utf-16"),  # with a BOM
        "empty.txt": b"",
        "encrypted.pdf": _encrypt(text_pdf, user="pw", owner="pw"),
        "restricted.pdf": _encrypt(text_pdf, user="", owner="owner-secret"),
        "scanned.pdf": _image_pdf(),
        "photo.png": _png(),
        "corrupt.docx": docx[: len(docx) // 2],
        "corrupt.pdf": b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog /Pages 9 0 R >>\nthis is not a pdf body\n",
    }
    for name, data in files.items():
        _write(root / name, data)
    return {name: root / name for name in files}


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _pdf(pages: tuple[tuple[str, str], ...], *, title: str) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_creation_date(FIXED_DATE)
    pdf.set_auto_page_break(False)  # the footer line sits in the bottom margin
    pdf.set_title(title)
    pdf.set_author("Vantorel Aeronautics")
    for number, (heading, body) in enumerate(pages, 1):
        pdf.add_page()
        pdf.set_font("Helvetica", "B", 16)
        pdf.multi_cell(0, 10, heading, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", size=11)
        for paragraph in body.split("\n"):
            pdf.multi_cell(0, 6, paragraph, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(4)
        pdf.set_y(-20)
        pdf.set_font("Helvetica", "I", 8)
        pdf.cell(0, 10, f"{title} - page {number} of {len(pages)}")
    return bytes(pdf.output())


def _encrypt(data: bytes, *, user: str, owner: str) -> bytes:
    from pypdf import PdfReader, PdfWriter
    from pypdf.generic import ArrayObject

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(user, owner, algorithm="RC4-128")  # RC4 has no random salt (AES does)
    # pypdf draws the second file id at random; the first (which keys the cipher) comes from fpdf2's
    # deterministic id, so pinning the second to it makes the bytes reproducible
    writer._ID = ArrayObject((writer._ID[0], writer._ID[0]))
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _png() -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (480, 120), "white")
    ImageDraw.Draw(image).text((12, 40), "Scanned receipt: 18 florins", fill="black")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _image_pdf() -> bytes:
    """A "scanned" page: a picture of text and no text layer."""
    from fpdf import FPDF
    from PIL import Image

    pdf = FPDF()
    pdf.set_creation_date(FIXED_DATE)
    pdf.add_page()
    pdf.image(Image.open(io.BytesIO(_png())), x=10, y=10, w=180)
    return bytes(pdf.output())


def _greenhouse_docx() -> bytes:
    import docx

    document = docx.Document()
    document.add_heading("Greenhouse Trial Report 2031", level=0)
    document.add_paragraph("Prepared by the Brannoch Agricultural Cooperative for its members.")
    document.add_heading("Method", level=1)
    document.add_paragraph("The trial ran for 143 days in greenhouse number 4 at Ebbersley, from late "
                           "February to the middle of July.")
    document.add_heading("Lighting", level=2)
    document.add_paragraph("Lamps were switched on at 05:15 every morning and dimmed to 30 percent "
                           "after sunset.")
    document.add_heading("Results", level=1)
    document.add_paragraph("Water use fell by 27 percent compared with the previous season, thanks to "
                           "drip emitters supplied by Halloway Irrigation.")
    document.add_heading("Yield table", level=2)
    rows = (("Crop", "Variety", "Yield (kg per m²)"), ("Tomato", "Redwick Gem", "18.4"),
            ("Pepper", "Sollan Flame", "9.7"), ("Cucumber", "Ardent Long", "22.1"))
    table = document.add_table(rows=len(rows), cols=3)
    for row, values in zip(table.rows, rows, strict=True):
        for cell, value in zip(row.cells, values, strict=True):
            cell.text = value
    document.add_paragraph("Yields were weighed at the packing shed on the day of harvest.",
                           style="List Bullet")
    props = document.core_properties
    props.author, props.created, props.modified, props.revision = "Brannoch", FIXED_DATE, FIXED_DATE, 1
    props.last_modified_by = "Brannoch"
    out = io.BytesIO()
    document.save(out)
    return _fixed_zip_times(out.getvalue())


def _fixed_zip_times(data: bytes) -> bytes:
    """The same zip with every entry's timestamp pinned (python-docx stamps the current time)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            fixed = zipfile.ZipInfo(info.filename, date_time=(2031, 3, 14, 9, 26, 52))
            fixed.compress_type = zipfile.ZIP_DEFLATED
            fixed.external_attr = 0o644 << 16
            dst.writestr(fixed, src.read(info.filename))
    return out.getvalue()
