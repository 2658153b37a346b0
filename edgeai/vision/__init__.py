"""Vision: images decoded safely (`image.py`: a pixel cap, EXIF orientation, decompression bombs
as errors), read (`ocr.py`: RapidOCR), looked at (`faces.py`: OpenCV's Haar cascades) and turned
into a compact fenced description a text model gets as context (`describe.py`).

Nothing here imports Pillow, OpenCV or onnxruntime at module level.
"""
