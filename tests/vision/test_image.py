"""Opening images safely: the pixel cap (JPEG shrunk while decoding, others decoded then
downscaled, or refused with the cap named), decompression bombs, EXIF orientation, corrupt and
truncated files, modes, dominant colours. Real Pillow on files the tests write."""

from __future__ import annotations

import pytest
from PIL import Image

from edgeai.errors import BadInput
from edgeai.vision.image import MAX_PIXELS, dominant_colours, open_image


def test_a_plain_png_opens_with_its_facts(tmp_path):
    path = tmp_path / "halves.png"
    image = Image.new("RGB", (200, 100), (220, 30, 30))
    image.paste((30, 70, 220), (100, 0, 200, 100))
    image.save(path)
    opened = open_image(path)
    facts = opened.facts
    assert (facts.width, facts.height, facts.format, facts.mode) == (200, 100, "PNG", "RGB")
    assert facts.decoded == (200, 100) and facts.scale == 1.0 and facts.draft == 1
    names = {c.name: c.share for c in facts.colours}
    assert set(names) == {"red", "blue"}, facts.colours
    assert all(0.4 < share < 0.6 for share in names.values())


def test_exif_orientation_is_applied(tmp_path):
    """Orientation 6 = stored sideways, shown turned 90 degrees clockwise: the stored left half
    (red) is the shown top."""
    stored = Image.new("RGB", (200, 100), (255, 255, 255))
    stored.paste((255, 0, 0), (0, 0, 100, 100))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    stored.save(path, exif=exif, quality=95)
    opened = open_image(path)
    assert (opened.facts.width, opened.facts.height) == (100, 200)
    assert opened.facts.orientation == 6
    assert opened.image.size == (100, 200)
    top, bottom = opened.image.getpixel((50, 20)), opened.image.getpixel((50, 180))
    assert top[0] > 200 and top[1] < 60, top
    assert bottom[1] > 200, bottom


def test_a_jpeg_over_the_cap_is_shrunk_while_decoding(tmp_path):
    path = tmp_path / "big.jpg"
    Image.new("RGB", (4000, 3000), (10, 120, 40)).save(path, quality=80)
    opened = open_image(path, max_pixels=1_000_000)
    facts = opened.facts
    assert (facts.width, facts.height) == (4000, 3000)  # the true size is still reported
    assert facts.draft == 4  # libjpeg decoded 1000x750, never the 12 MP
    assert opened.image.width * opened.image.height <= 1_000_000
    assert abs(opened.image.width / opened.image.height - 4 / 3) < 0.01
    assert facts.scale == pytest.approx(opened.image.width / 4000)


def test_a_png_over_the_cap_is_downscaled_after_decoding(tmp_path):
    path = tmp_path / "wide.png"
    Image.new("L", (1500, 1000), 200).save(path)
    opened = open_image(path, max_pixels=1_000_000)
    assert opened.facts.draft == 1 and opened.facts.mode == "L"
    assert opened.image.mode == "RGB" and opened.image.width * opened.image.height <= 1_000_000


def test_a_png_far_over_the_cap_is_refused_with_the_cap_named(tmp_path):
    path = tmp_path / "huge.png"
    Image.new("L", (2000, 1500), 0).save(path)
    with pytest.raises(BadInput, match=r"over the 1\.0 MP cap") as caught:
        open_image(path, max_pixels=1_000_000)
    assert "\n" not in caught.value.message


def test_a_bomb_header_at_the_real_cap_is_refused_before_decoding(tmp_path, header_only_png):
    # 9500 x 9500 = 90 MP: over our decode limit and over Pillow's warning threshold (89.5 MP)
    path = header_only_png(tmp_path / "bomb.png", 9500, 9500)
    with _no_warnings():
        with pytest.raises(BadInput, match=f"over the {MAX_PIXELS // 1_000_000} MP cap"):
            open_image(path)


def test_pillows_own_bomb_error_becomes_bad_input(tmp_path, header_only_png):
    path = header_only_png(tmp_path / "bigger-bomb.png", 20000, 20000)  # 400 MP: Pillow's error
    with pytest.raises(BadInput, match="decompression bomb"):
        open_image(path)


@pytest.mark.parametrize("content, message", [
    (b"this is not an image at all\n" * 10, "not an image edgeai can read"),
    (b"", "not an image edgeai can read"),
])
def test_a_non_image_is_one_line(tmp_path, content, message):
    path = tmp_path / "notes.png"
    path.write_bytes(content)
    with pytest.raises(BadInput, match=message):
        open_image(path)


def test_a_truncated_image_is_one_line(tmp_path):
    whole = tmp_path / "whole.png"
    Image.effect_noise((300, 300), 64).convert("RGB").save(whole)
    cut = tmp_path / "cut.png"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(BadInput, match="corrupt or truncated") as caught:
        open_image(cut)
    assert "\n" not in caught.value.message


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(BadInput, match="no such image"):
        open_image(tmp_path / "nope.png")
    with pytest.raises(BadInput, match="not a file"):
        open_image(tmp_path)


def test_transparent_text_lands_on_white(tmp_path):
    path = tmp_path / "logo.png"
    image = Image.new("RGBA", (100, 50), (0, 0, 0, 0))  # fully transparent black
    image.paste((0, 0, 0, 255), (40, 10, 60, 40))  # an opaque black mark
    image.save(path)
    opened = open_image(path)
    assert opened.facts.mode == "RGBA"
    assert opened.image.getpixel((5, 5)) == (255, 255, 255)
    assert opened.image.getpixel((50, 25)) == (0, 0, 0)


def test_sixteen_bit_grey_is_stretched_not_clipped(tmp_path):
    path = tmp_path / "scan16.png"
    gradient = Image.linear_gradient("L").resize((64, 64)).convert("I").point(lambda v: v * 256)
    gradient.convert("I;16").save(path)
    opened = open_image(path)
    low, high = opened.image.convert("L").getextrema()
    assert low < 10 and high > 245


def test_dominant_colours_of_a_photo():
    from skimage import data

    colours = dominant_colours(Image.fromarray(data.astronaut()))
    assert 1 <= len(colours) <= 4
    assert all(c.hex.startswith("#") and len(c.hex) == 7 for c in colours)
    assert sum(c.share for c in colours) <= 1.0


class _no_warnings:
    """Nothing Pillow warns reaches the user: our refusal comes first."""

    def __enter__(self):
        import warnings

        self._catch = warnings.catch_warnings(record=True)
        self.seen = self._catch.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        self._catch.__exit__(*exc)
        assert not [w for w in self.seen if "DecompressionBomb" in type(w.message).__name__], self.seen
        return False
