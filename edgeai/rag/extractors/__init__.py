"""One module per file format, each `extract(path, notice) -> Iterator[Section]`.

Only `edgeai.rag.extract` imports them, lazily, and only when a file of that format is read, so
pypdf, python-docx, selectolax and markdown-it cost nothing until they are needed.
"""
