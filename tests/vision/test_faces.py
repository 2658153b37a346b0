"""Faces with OpenCV's Haar cascade: found in a real photo (scikit-image's astronaut, Eileen
Collins), none in a blank frame or in photos without faces."""

from __future__ import annotations

import pytest
from PIL import Image

from edgeai.vision.faces import find_faces
from edgeai.vision.image import open_image


def test_the_astronauts_face_is_found(astronaut):
    faces = find_faces(open_image(astronaut).image)
    assert len(faces) == 1
    left, top, right, bottom = faces[0].box
    # her face, by eye: about x 175-270, y 65-160 in the 512x512 photo
    assert 150 < left < 200 and 45 < top < 90 and 250 < right < 295 and 140 < bottom < 185
    assert 0.5 <= faces[0].score <= 1.0 and faces[0].label == "face"


def test_a_blank_frame_has_no_face():
    assert find_faces(Image.new("RGB", (640, 480), "white")) == ()
    assert find_faces(Image.new("RGB", (640, 480), (30, 30, 30))) == ()


@pytest.mark.parametrize("name", ["coins", "coffee", "rocket", "chelsea"])
def test_photos_without_faces_have_none(name):
    """coins() gave three false faces at OpenCV's usual 5 neighbours; MIN_NEIGHBOURS keeps them out."""
    from skimage import data

    assert find_faces(Image.fromarray(getattr(data, name)()).convert("RGB")) == ()


def test_a_big_photo_is_searched_shrunk_and_boxed_in_its_own_pixels(astronaut):
    big = open_image(astronaut).image.resize((2048, 2048))
    faces = find_faces(big)
    assert len(faces) == 1
    left, top, right, bottom = faces[0].box
    assert 600 < left < 800 and 900 < right < 1180  # 4x the 512 photo's box


def test_an_opencv_without_the_haar_cascades_says_which_to_install(monkeypatch):
    """OpenCV 5 moved CascadeClassifier and its XML files out of opencv-python-headless."""
    import sys
    import types

    from edgeai.errors import MissingExtra
    from edgeai.vision import faces

    opencv5 = types.ModuleType("cv2")
    opencv5.__version__ = "5.1.0"
    opencv5.data = types.SimpleNamespace(haarcascades="/nowhere/")
    monkeypatch.setattr(faces, "_cascade", None)
    monkeypatch.setitem(sys.modules, "cv2", opencv5)
    with pytest.raises(MissingExtra, match="Haar") as caught:
        find_faces(Image.new("RGB", (64, 64)))
    assert "opencv-python-headless>=4.8,<5" in caught.value.hint
