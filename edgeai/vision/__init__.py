"""Vision: images decoded safely (`image.py`: a pixel cap, JPEG shrunk while decoding, EXIF
orientation, decompression bombs and corrupt files as one-line errors), read (`ocr.py`:
RapidOCR, lines in reading order), looked at (`faces.py`: OpenCV's Haar frontal-face cascade),
turned into a compact fenced description a text model gets as context plus a "how the image was
used" label (`describe.py`), and the one path every surface takes from a file to all of that
(`analyze.py`).

Nothing here imports Pillow, OpenCV, numpy or onnxruntime at module level.
"""
