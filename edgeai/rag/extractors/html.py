"""HTML via selectolax (Lexbor): the page's own text, without the site around it.

Chrome is removed by element, not guessed by text density, so short lines of the article
("Price: 7 florins") survive where readability-style extractors drop them: nav, aside,
script, style, noscript, form, template, iframe, svg, hidden elements and their ARIA roles
(navigation, banner, contentinfo, complementary) always; header and footer unless they sit
inside an <article> or <main> (there they hold the article's title and byline). When the page
has a <main> (or role=main), only it is read. h1-h6 become heading paths; every block element
(p, li, div, td rows, ...) is a section; <pre> is kept verbatim as code; tables one row per line.
Pages exported by tools that never write <h*> mark titles otherwise: a short block whose whole
text is bold (<p><b>Returns within 30 days</b></p>) or whose class names a title or heading is a
heading too, one level below any real one (`titles.py` ranks the styles).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from edgeai.rag.extract import Notice, Section
from edgeai.rag.extractors.text import decode_bytes

_DROP = ("nav, aside, script, style, noscript, form, template, iframe, svg, object, [hidden], "
         "[aria-hidden=true], [role=navigation], [role=banner], [role=contentinfo], [role=complementary], "
         "[role=search]")
_BLOCKS = frozenset({"p", "div", "section", "article", "main", "header", "footer", "li", "ul", "ol", "dl",
                     "dt", "dd", "blockquote", "figure", "figcaption", "address", "details", "summary",
                     "caption", "hr", "body", "center", "fieldset", "legend"})
_HEADINGS = {f"h{n}": n for n in range(1, 7)}
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([\w-]+)""", re.IGNORECASE)
_SPACE = re.compile(r"\s+")
_TITLE_CLASS = re.compile(r"title|heading|headline|subhead|caption", re.IGNORECASE)
_BOLD = frozenset({"b", "strong"})


def extract(path: Path, notice: Notice) -> Iterator[Section]:
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(_decode(path, path.read_bytes(), notice))
    root = tree.css_first("main, [role=main]") or tree.body
    if root is None:
        return
    _remove(root.css(_DROP))
    _remove([node for node in root.css("header, footer") if not _inside(node, ("article", "main"))])
    yield from _walk(root)


def _remove(nodes: list) -> None:
    """Decompose the outermost of `nodes` only: a node inside a removed one is already gone, and
    touching it after its ancestor was freed would read freed memory."""
    ids = {node.mem_id for node in nodes}
    outermost = [node for node in nodes if not _inside(node, (), ids)]
    for node in outermost:
        node.decompose()


def _decode(path: Path, data: bytes, notice: Notice) -> str:
    declared = _META_CHARSET.search(data[:4096])
    if declared:
        import codecs

        try:
            encoding = codecs.lookup(declared.group(1).decode("ascii")).name
        except LookupError:
            encoding = None
        has_bom = data.startswith((codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
        if encoding and encoding != "utf-8" and not has_bom:  # a BOM outranks the declaration
            return data.decode(encoding, errors="replace")
    return decode_bytes(path, data, notice)


def _inside(node, tags: tuple[str, ...], ids: frozenset | set = frozenset()) -> bool:
    """Whether an ancestor of `node` has one of `tags` or is one of the nodes `ids` names."""
    parent = node.parent
    while parent is not None:
        if parent.tag in tags or parent.mem_id in ids:
            return True
        parent = parent.parent
    return False


def _pseudo_title(node) -> str | None:
    """The block's text when it is a title not written as <h*>: short, title-like, and all bold
    or in an element whose class or id says title/heading."""
    from edgeai.rag.titles import title_style

    text = _SPACE.sub(" ", node.text(deep=True, separator=" ")).strip()
    if not text or title_style(text, alone=True) is None:
        return None
    attrs = node.attributes
    if _TITLE_CLASS.search(f"{attrs.get('class') or ''} {attrs.get('id') or ''}"):
        return text
    child, bold = node.child, False
    while child is not None:
        if child.is_text_node:
            if child.text(deep=False).strip():
                return None
        elif child.tag in _BOLD:
            bold = True
        elif child.tag != "br":
            return None
        child = child.next
    return text if bold else None


def _walk(root) -> Iterator[Section]:
    from edgeai.rag.titles import Outline

    outline = Outline(base=6)  # h1-h6 are levels 1-6; titles without markup rank below them
    buffer: list[str] = []
    kind = "paragraph"

    def flush() -> Iterator[Section]:
        lines = [_SPACE.sub(" ", line).strip() for line in "".join(buffer).split("\n")]
        text = "\n".join(line for line in lines if line)
        buffer.clear()
        if text:
            yield Section(text, kind, heading=outline.path())

    def heading(title: str, **where) -> Iterator[Section]:
        for closed, path in outline.push(title, **where):
            yield Section(closed, heading=path)

    # an explicit stack, not recursion: real pages nest deeper than Python's recursion limit
    stack = [(root, False)]
    while stack:
        node, leaving = stack.pop()
        tag = node.tag
        if leaving:
            yield from flush()
            kind = "paragraph"
            continue
        if node.is_text_node:  # source line breaks are spaces in HTML; only <br> breaks a line
            buffer.append(_SPACE.sub(" ", node.text(deep=False)))
            continue
        if tag == "br":
            buffer.append("\n")
            continue
        if tag in _HEADINGS:
            yield from flush()
            title = _SPACE.sub(" ", node.text(deep=True, separator=" ")).strip()
            if title:
                yield from heading(title, level=_HEADINGS[tag])
            continue
        if tag in ("pre", "table"):
            yield from flush()
            text = node.text(deep=True) if tag == "pre" else _table(node)
            if text.strip():
                yield Section(text.strip("\n"), "code" if tag == "pre" else "table",
                              heading=outline.path())
            continue
        if tag in _BLOCKS:
            yield from flush()
            if tag not in ("li", "body", "main", "article") and (title := _pseudo_title(node)):
                yield from heading(title, style="bold")
                continue
            kind = "list" if tag == "li" else "paragraph"
            stack.append((node, True))
        children = []
        child = node.child
        while child is not None:
            children.append(child)
            child = child.next
        stack.extend((c, False) for c in reversed(children))
    yield from flush()
    for closed, path in outline.close():
        yield Section(closed, heading=path)


def _table(node) -> str:
    rows = []
    for tr in node.css("tr"):
        cells = [_SPACE.sub(" ", cell.text(deep=True, separator=" ")).strip() for cell in tr.css("th, td")]
        if any(cells):
            rows.append(" | ".join(cells))
    return "\n".join(rows)
