"""Receipts rendered with Pillow (a few layouts and fonts, items with prices and a TOTAL line),
a PNG shaped like a decompression bomb, and the total line OCR should find: the image inputs the
vision, CLI, server and chat tests share."""

from __future__ import annotations

import random
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

DEJAVU = Path("/usr/share/fonts/truetype/dejavu")
ITEMS = ["Milk 1L", "Sourdough bread", "Apples 1kg", "Coffee beans", "Cheddar", "Olive oil", "Eggs x12",
         "Bananas", "Rice 2kg", "Tomatoes", "Butter", "Orange juice", "Pasta", "Yogurt"]


@dataclass(frozen=True)
class Receipt:
    path: Path
    total: str  # as printed, e.g. "23.33"
    layout: str


def font(name: str | None, size: int):
    """A DejaVu face where the system has one, else (or for None) Pillow's own bundled font."""
    from PIL import ImageFont

    path = DEJAVU / name if name else None
    if path and path.exists():
        return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size=size)


def render_receipt(path: Path, layout: str, seed: int) -> Receipt:
    """One receipt: a shop name, 4-7 items with prices right-aligned, and a TOTAL line; layouts
    vary the font, the width, leaders, currency signs, a subtotal/tax block and a slight tilt."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    items = [(name, rng.randint(49, 2499) / 100) for name in rng.sample(ITEMS, rng.randint(4, 7))]
    subtotal = round(sum(price for _, price in items), 2)
    tax = round(subtotal * 0.08, 2) if layout in ("tax", "tilted") else 0.0
    total = f"{subtotal + tax:.2f}"
    style = {"mono": ("DejaVuSansMono.ttf", 28, 640, ""), "sans": ("DejaVuSans.ttf", 26, 560, "$"),
             "default": (None, 30, 620, ""), "tax": ("DejaVuSerif.ttf", 24, 520, "EUR "),
             "tilted": ("DejaVuSansMono.ttf", 26, 600, "")}[layout]
    face = font(style[0], style[1])
    rows = [("SUNRISE MARKET", None), ("12 Harbour St.", None), ("", None)]
    rows += [(name, f"{style[3]}{price:.2f}") for name, price in items]
    rows.append(("", None))
    if tax:
        rows += [("Subtotal", f"{style[3]}{subtotal:.2f}"), ("Tax 8%", f"{style[3]}{tax:.2f}")]
    rows.append(("TOTAL", f"{style[3]}{total}"))
    rows += [("", None), ("Thank you!", None)]
    step = int(style[1] * 1.7)
    width, height = style[2], 40 + step * len(rows)
    image = Image.new("RGB", (width, height), (250, 248, 240))
    draw = ImageDraw.Draw(image)
    for i, (label, amount) in enumerate(rows):
        y = 20 + i * step
        if amount is None:  # a heading or a footer, centred
            draw.text(((width - draw.textlength(label, font=face)) / 2, y), label, fill="black", font=face)
            continue
        draw.text((24, y), label, fill="black", font=face)
        right = width - 24 - draw.textlength(amount, font=face)
        if layout == "sans":  # dot leaders between the label and the amount
            start = 24 + draw.textlength(label, font=face) + 12
            dots = "." * max(0, int((right - 12 - start) / draw.textlength(".", font=face)))
            draw.text((start, y), dots, fill=(90, 90, 90), font=face)
        draw.text((right, y), amount, fill="black", font=face)
    if layout == "tilted":  # a phone photo of a receipt: turned a little, saved as JPEG
        image = image.rotate(1.5, expand=True, fillcolor=(120, 120, 120), resample=Image.Resampling.BICUBIC)
        path = path.with_suffix(".jpg")
        image.save(path, quality=90)
    else:
        image.save(path)
    return Receipt(path, total, layout)


LAYOUTS = ("mono", "sans", "default", "tax", "tilted")


def render_receipts(folder: Path) -> list[Receipt]:
    """One receipt of each layout in `folder`."""
    return [render_receipt(folder / f"receipt-{layout}.png", layout, seed)
            for seed, layout in enumerate(LAYOUTS)]


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A tiny PNG that claims `width` x `height`: its pixel data is a few bytes of zlib — the shape
    of a decompression bomb (a real one's IDAT inflates to the full size; we must refuse before
    reading it)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def total_line(text: str) -> str | None:
    """The line that states the total: 'TOTAL ...', never 'Subtotal ...'."""
    lines = [line for line in text.splitlines() if re.search(r"(?<!sub)total", line, re.IGNORECASE)]
    return lines[-1] if lines else None
