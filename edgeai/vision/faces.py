"""Faces in an image: OpenCV's Haar frontal-face cascade (the XML ships inside
opencv-python-headless 4.x, which rapidocr already brings).

Boundary: an RGB Pillow image in, `Face` boxes with a score out. cv2 and numpy are imported on
first use; the cascade is loaded once. Frontal faces only (no profiles), and no identity: a box
says "a face is here", nothing about whose.

OpenCV 5 moved the Haar cascades out of the main package (into contrib); that build says so as
a `MissingExtra` with the pin that brings them back, rather than failing on a missing attribute.

The score is the number of overlapping detection windows that agreed (OpenCV's "neighbours"),
squashed into 0..1 as n / (n + 10). Measured on scikit-image's samples: the astronaut's face got
44 windows, the three false faces in `coins()` 7-8, and 96 of the 100 faces of `lfw_subset()`
(upscaled) at least 10 — hence `MIN_NEIGHBOURS`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edgeai.errors import MissingExtra

if TYPE_CHECKING:
    from PIL.Image import Image

CASCADE = "haarcascade_frontalface_default.xml"
MIN_NEIGHBOURS = 10
# the detector runs on at most this long a side: Haar cost grows with the area and faces
# smaller than 1/40 of the picture are not what a description is about
MAX_SIDE = 1024
CONTAINED = 0.6  # a box this much inside a better one is the same face found twice

Box = tuple[int, int, int, int]  # left, top, right, bottom in the original image's pixels


@dataclass(frozen=True)
class Face:
    box: Box
    score: float
    label: str = "face"


_cascade = None
_lock = threading.Lock()  # a CascadeClassifier is not safe to share between threads


def _classifier():
    global _cascade
    if _cascade is None:
        try:
            import cv2
        except ImportError as exc:
            raise MissingExtra(f"face detection (opencv-python-headless) [{exc}]",
                               "pip install 'edgeai[vision]'") from None
        path = getattr(getattr(cv2, "data", None), "haarcascades", "") + CASCADE
        if not hasattr(cv2, "CascadeClassifier"):
            raise MissingExtra(f"OpenCV's Haar face cascade (OpenCV {cv2.__version__} moved it out of the "
                               "main package)", "pip install 'opencv-python-headless>=4.8,<5'")
        classifier = cv2.CascadeClassifier(path)
        if classifier.empty():
            raise MissingExtra(f"OpenCV's Haar face cascade ({CASCADE})",
                               "pip install --force-reinstall 'opencv-python-headless>=4.8,<5'")
        _cascade = classifier
    return _cascade


def find_faces(image: Image, scale: float = 1.0) -> tuple[Face, ...]:
    """Frontal faces in `image` (RGB), best first. `scale` = analysed pixels per original pixel
    (`ImageFacts.scale`): boxes come back in the original image's pixels."""
    with _lock:
        classifier = _classifier()  # first: a missing OpenCV is a MissingExtra, not an ImportError
        import cv2
        import numpy as np

        shrink = min(1.0, MAX_SIDE / max(image.width, image.height))
        grey = image.convert("L")
        if shrink < 1.0:
            grey = grey.resize((max(1, round(image.width * shrink)), max(1, round(image.height * shrink))))
        pixels = cv2.equalizeHist(np.asarray(grey))  # Haar features are contrast differences
        smallest = max(24, min(pixels.shape) // 40)
        rects, neighbours = classifier.detectMultiScale2(pixels, scaleFactor=1.1, minNeighbors=MIN_NEIGHBOURS,
                                                         minSize=(smallest, smallest))
    factor = shrink * scale
    faces = [Face((round(x / factor), round(y / factor), round((x + w) / factor), round((y + h) / factor)),
                  round(n / (n + 10), 3))
             for (x, y, w, h), n in zip(np.asarray(rects).reshape(-1, 4).tolist(),
                                        np.asarray(neighbours).reshape(-1).tolist(), strict=True)]
    return _distinct(sorted(faces, key=lambda f: -f.score))


def _distinct(faces: list[Face]) -> tuple[Face, ...]:
    kept: list[Face] = []
    for face in faces:
        if all(_inside(face.box, other.box) < CONTAINED for other in kept):
            kept.append(face)
    return tuple(kept)


def _inside(box: Box, other: Box) -> float:
    """The share of `box`'s area that lies inside `other`."""
    w = min(box[2], other[2]) - max(box[0], other[0])
    h = min(box[3], other[3]) - max(box[1], other[1])
    area = (box[2] - box[0]) * (box[3] - box[1])
    return w * h / area if w > 0 and h > 0 and area > 0 else 0.0
