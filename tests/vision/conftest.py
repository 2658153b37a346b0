"""The vision tests' fixtures: receipts (edgeai_testing/receipts.py renders them), the OCR engine
shared by the whole session, and scikit-image's sample photos."""

from __future__ import annotations

from pathlib import Path

import pytest
from edgeai_testing.receipts import Receipt, png_header_only, render_receipt, render_receipts, total_line


@pytest.fixture(scope="session")
def receipts(tmp_path_factory) -> list[Receipt]:
    return render_receipts(tmp_path_factory.mktemp("receipts"))


@pytest.fixture(scope="session")
def ocr_engine():
    """The process's one RapidOCR engine, created once for every test (1-2 s each time otherwise)."""
    from edgeai.vision import ocr

    return ocr.engine()


@pytest.fixture(scope="session")
def astronaut(tmp_path_factory) -> Path:
    from PIL import Image
    from skimage import data

    path = tmp_path_factory.mktemp("photos") / "astronaut.png"
    Image.fromarray(data.astronaut()).save(path)
    return path


@pytest.fixture(scope="session")
def header_only_png():
    return png_header_only


@pytest.fixture(scope="session")
def find_total_line():
    return total_line


@pytest.fixture(scope="session")
def draw_receipt():
    return render_receipt
