"""One image file looked at: decoded within the cap, read (OCR) and searched for faces.

Boundary: a path in, an `Analysis` out (facts, OCR lines, faces, the seconds each step took) and
its plain-data form (`to_dict`, the shape of `edgeai see --json`). Every surface that takes an
image (`edgeai see`, the chat's `/image`, RAG's image files) goes through here, so they all
apply the same cap and see the same thing.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgeai.vision.describe import Description, describe
from edgeai.vision.faces import Face, find_faces
from edgeai.vision.image import MAX_PIXELS, ImageFacts, open_image
from edgeai.vision.ocr import OcrResult, read_text


@dataclass(frozen=True)
class Analysis:
    facts: ImageFacts
    ocr: OcrResult
    faces: tuple[Face, ...]
    seconds: dict[str, float] = field(default_factory=dict)  # decode, ocr, faces

    def describe(self, **options) -> Description:
        return describe(self.facts, self.ocr, self.faces, **options)

    def to_dict(self) -> dict[str, Any]:
        """`text` (OCR, reading order), `lines`, `objects` (faces), `size` and the other facts;
        boxes are [left, top, right, bottom] in the original image's pixels."""
        facts = self.facts
        return {
            "file": facts.file,
            "size": {"width": facts.width, "height": facts.height},
            "format": facts.format,
            "mode": facts.mode,
            "decoded": {"width": facts.decoded[0], "height": facts.decoded[1]},
            "colours": [asdict(c) for c in facts.colours],
            "text": self.ocr.text,
            "lines": [{"text": line.text, "box": list(line.box), "confidence": line.confidence}
                      for line in self.ocr.lines],
            "objects": [{"label": f.label, "box": list(f.box), "score": f.score} for f in self.faces],
            "used": self.describe().label,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
        }


def analyze(path: str | Path, max_pixels: int = MAX_PIXELS) -> Analysis:
    started = time.perf_counter()
    opened = open_image(path, max_pixels)
    decoded = time.perf_counter()
    ocr = read_text(opened.image, opened.facts.scale)
    read = time.perf_counter()
    faces = find_faces(opened.image, opened.facts.scale)
    done = time.perf_counter()
    # the OCR call's own time excludes the engine's creation (first use in a process)
    return Analysis(opened.facts, ocr, faces,
                    {"decode": decoded - started, "ocr": ocr.seconds, "ocr_with_start": read - decoded,
                     "faces": done - read})
