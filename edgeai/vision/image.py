"""An image file -> pixels that are safe to analyse, and the facts about it a text model is told.

Boundary: one file in, an `OpenedImage` out (an RGB Pillow image, EXIF orientation applied, at
most `MAX_PIXELS`, and its `ImageFacts`), or a one-line `BadInput`. Nothing here runs a model.

The cap: no analysis sees more than `MAX_PIXELS`. A JPEG over it is shrunk while decoding
(libjpeg's DCT scaling through Pillow's `draft`: the largest of 1/2, 1/4 or 1/8 that fits the
cap, so a 100 MP photo never exists in memory at full size); any other format is decoded whole
and then downscaled, which is allowed up to `MAX_DECODE_PIXELS` and refused above it with the
cap named. Pillow's own
decompression-bomb guard (a warning above 89.5 MP, an error above twice that) sits above our
limits: its warning is never shown (our check is stricter and follows), its error is a `BadInput`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edgeai.errors import BadInput, MissingExtra

if TYPE_CHECKING:
    from PIL.Image import Image

MAX_PIXELS = 40_000_000
# Decoding whole before the downscale costs ~3 bytes a pixel (~240 MB here); kept under Pillow's
# warning threshold (89.5 MP) so that our refusal, which names the cap, always comes first.
MAX_DECODE_PIXELS = 2 * MAX_PIXELS
# formats Pillow can shrink while decoding (`Image.draft`)
DRAFT_FORMATS = frozenset({"JPEG", "MPO"})
# EXIF orientations that swap width and height (transpose, rotate 90/270, transverse)
_SWAPS = frozenset({5, 6, 7, 8})
_ORIENTATION_TAG = 0x0112
# the few names a colour gets: a small model reads "white, black" better than "#f7f5f0"
NAMED_COLOURS = {
    "black": (0, 0, 0), "dark gray": (64, 64, 64), "gray": (128, 128, 128),
    "light gray": (192, 192, 192), "white": (255, 255, 255), "red": (220, 30, 30),
    "dark red": (128, 0, 0), "orange": (255, 140, 0), "yellow": (250, 220, 30),
    "olive": (128, 128, 0), "green": (40, 160, 40), "dark green": (0, 90, 0), "teal": (0, 128, 128),
    "cyan": (0, 220, 230), "light blue": (150, 200, 240), "blue": (30, 70, 220), "navy": (0, 0, 110),
    "purple": (120, 40, 150), "magenta": (230, 0, 200), "pink": (250, 170, 190),
    "brown": (120, 70, 30), "tan": (210, 180, 140), "cream": (250, 245, 215),
}


@dataclass(frozen=True)
class Colour:
    name: str
    hex: str  # the most common shade under this name
    share: float  # of the image's area, 0..1


@dataclass(frozen=True)
class ImageFacts:
    file: str  # the file's name (never its folder: the description goes to a model)
    width: int  # as the image is meant to be seen (EXIF orientation applied), full resolution
    height: int
    format: str | None  # Pillow's name: PNG, JPEG, WEBP...
    mode: str  # the file's own pixel mode (RGB, RGBA, L, P, CMYK, I;16...)
    colours: tuple[Colour, ...]
    decoded: tuple[int, int]  # the pixels analysed: smaller than (width, height) over the cap
    orientation: int = 1  # the EXIF orientation tag (1 = as stored)
    draft: int = 1  # decoded at 1/draft scale by the JPEG decoder itself (1, 2, 4 or 8)
    frames: int = 1  # an animation's frame count; only the first is analysed

    @property
    def scale(self) -> float:
        """Analysed pixels per original pixel (1.0 unless downscaled)."""
        return self.decoded[0] / self.width if self.width else 1.0


@dataclass(frozen=True)
class OpenedImage:
    image: Image  # RGB, oriented, at most MAX_PIXELS
    facts: ImageFacts


def pillow():
    try:
        from PIL import Image
    except ImportError:
        raise MissingExtra("Pillow (image input)", "pip install 'edgeai[vision]'") from None
    return Image


def open_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> OpenedImage:
    """Decode `path` within the cap (see the module docstring); every failure is one line."""
    Image = pillow()
    path = Path(path)
    if not path.exists():
        raise BadInput(f"no such image: {path}")
    if not path.is_file():
        raise BadInput(f"not a file: {path}")
    name = path.name
    try:
        with warnings.catch_warnings():
            # Pillow warns above 89.5 MP; the size check below is stricter and names our cap
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            source = Image.open(path)
    except Image.DecompressionBombError:
        raise BadInput(f"{name} is far over the {_mp(max_pixels)} cap (Pillow refused it as a possible "
                       "decompression bomb)", "downscale it first") from None
    except Image.UnidentifiedImageError:
        raise BadInput(f"{name} is not an image edgeai can read",
                       "PNG, JPEG, WebP, GIF, BMP and TIFF are") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadInput(f"{name} could not be read as an image: {_reason(exc)}") from None
    with source:
        try:
            return _decode(source, name, max_pixels)
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            # truncated data, a bad chunk, a text chunk that inflates past Pillow's limit
            raise BadInput(f"{name} is corrupt or truncated: {_reason(exc)}") from None


def _decode(source, name: str, max_pixels: int) -> OpenedImage:
    from PIL import ImageOps

    width, height = source.size
    fmt, mode = source.format, source.mode
    frames = getattr(source, "n_frames", 1)
    orientation = _orientation(source)
    if width * height > max_pixels and fmt in DRAFT_FORMATS:
        source.draft(source.mode, _draft_size(width, height, max_pixels))
    draft = max(1, round(width / source.size[0]))
    if source.size[0] * source.size[1] > decode_limit(max_pixels):
        raise BadInput(f"{name} is {width}x{height} ({_mp(width * height)}): over the {_mp(max_pixels)} cap, "
                       f"and {fmt or 'this format'} cannot be shrunk while decoding",
                       f"downscale it to {_mp(max_pixels)} or less first")
    source.load()
    image = ImageOps.exif_transpose(source) if orientation != 1 else source
    image = _to_rgb(image)
    if image.width * image.height > max_pixels:
        from PIL import Image

        image = image.resize(_fit(image.width, image.height, max_pixels), Image.Resampling.LANCZOS,
                             reducing_gap=3.0)  # a box reduce first, then Lanczos: fast and sharp
    shown = (height, width) if orientation in _SWAPS else (width, height)
    facts = ImageFacts(file=name, width=shown[0], height=shown[1], format=fmt, mode=mode,
                       colours=dominant_colours(image), decoded=image.size, orientation=orientation,
                       draft=draft, frames=frames)
    return OpenedImage(image, facts)


def _draft_size(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """The size to ask `draft` for: the largest DCT scale (1/2, 1/4, 1/8) whose result is within
    the cap, so nothing bigger is ever decoded (libjpeg takes the smallest scale whose result is
    at least the size asked, i.e. exactly this one); past 1/8, the 1/8 result, downscaled after."""
    for scale in (2, 4, 8):
        size = (-(-width // scale), -(-height // scale))
        if size[0] * size[1] <= max_pixels:
            return size
    return size


def decode_limit(max_pixels: int) -> int:
    """The most pixels decoded whole before a downscale to `max_pixels`."""
    return max_pixels * MAX_DECODE_PIXELS // MAX_PIXELS


def _orientation(source) -> int:
    try:
        value = int(source.getexif().get(_ORIENTATION_TAG, 1))
    except (OSError, SyntaxError, ValueError, TypeError):
        return 1  # an unreadable EXIF block is no reason to refuse the pixels
    return value if 1 <= value <= 8 else 1


def _to_rgb(image: Image) -> Image:
    """Any mode -> RGB. Transparency goes onto white (black text on a transparent PNG would
    otherwise vanish into black); 16-bit and float grey is stretched to its own range."""
    from PIL import Image

    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, "white")
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    if image.mode.startswith("I") or image.mode == "F":
        grey = image.convert("F")
        low, high = grey.getextrema()
        grey = grey.point(lambda v: (v - low) * (255.0 / ((high - low) or 1.0)))
        return grey.convert("L").convert("RGB")
    return image.convert("RGB")


def dominant_colours(image: Image, k: int = 6, min_share: float = 0.05, most: int = 4) -> tuple[Colour, ...]:
    """A few named colours by share of the area: a median-cut quantize of a 64x64 thumbnail
    (cheap at any size), each palette entry named by the nearest colour of `NAMED_COLOURS`,
    shares of one name summed."""
    from PIL import Image

    small = image.resize(_fit(image.width, image.height, 64 * 64), Image.Resampling.BOX)
    quantized = small.quantize(colors=k, method=Image.Quantize.MEDIANCUT)
    palette = quantized.getpalette() or []
    total = small.width * small.height
    named: dict[str, list] = {}  # name -> [share, best count, hex]
    for count, index in sorted(quantized.getcolors() or [], reverse=True):
        rgb = tuple(palette[3 * index:3 * index + 3])
        entry = named.setdefault(_name(rgb), [0.0, 0, ""])
        entry[0] += count / total
        if count > entry[1]:
            entry[1], entry[2] = count, "#{:02x}{:02x}{:02x}".format(*rgb)
    ranked = sorted(named.items(), key=lambda item: -item[1][0])
    return tuple(Colour(name, hex_, round(share, 3)) for name, (share, _, hex_) in ranked[:most]
                 if share >= min_share)


def _name(rgb: tuple[int, ...]) -> str:
    def distance(other: tuple[int, int, int]) -> float:
        # "redmean": a cheap weighting of RGB that tracks perceived difference far better than plain
        # Euclidean distance (which calls dark blues black)
        r = (rgb[0] + other[0]) / 2
        dr, dg, db = (rgb[0] - other[0]), (rgb[1] - other[1]), (rgb[2] - other[2])
        return (2 + r / 256) * dr * dr + 4 * dg * dg + (2 + (255 - r) / 256) * db * db

    return min(NAMED_COLOURS, key=lambda name: distance(NAMED_COLOURS[name]))


def _fit(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """The largest (w, h) of the same aspect with w * h <= max_pixels (never below 1x1)."""
    if width * height <= max_pixels:
        return width, height
    ratio = (max_pixels / (width * height)) ** 0.5
    w, h = max(1, int(width * ratio)), max(1, int(height * ratio))
    while w * h > max_pixels and (w > 1 or h > 1):  # rounding
        if w >= h:
            w -= 1
        else:
            h -= 1
    return w, h


def _mp(pixels: int) -> str:
    if pixels < 1_000_000:
        return f"{pixels:,} pixels"
    return f"{pixels / 1e6:.0f} MP" if pixels >= 10_000_000 else f"{pixels / 1e6:.1f} MP"


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]
