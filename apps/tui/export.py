"""Exporting a conversation to Markdown and JSON files, written atomically.

Boundary: stored conversation + messages in, files out. `/export` with no path writes both
formats into the current directory; a folder gets both; a path ending in .md or .json gets
that one file. A killed export never leaves a half-written file (temp file, fsync, rename).
A message's attachments go with it: in Markdown an image link to the stored copy under the data
dir (with its label as the alt text), in JSON the records with the copy's absolute `path`; a
reply says how its images were used.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from edgeai.chatdb import ChatDB, Conversation, StoredMessage
from edgeai.errors import BadInput, EdgeAIError
from edgeai.fileio import atomic_write
from edgeai.rag.context import source_from_dict


def _label(record: dict) -> str:
    from edgeai.chat.attachments import label

    return label(record).strip("[]")


ROLE_TITLES = {"user": "User", "assistant": "Assistant", "system": "System"}


def slug(title: str) -> str:
    words = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    return words[:48].rstrip("-") or "chat"


def to_markdown(conversation: Conversation, messages: list[StoredMessage]) -> str:
    lines = [f"# {conversation.title}", ""]
    if conversation.model:
        lines.append(f"- model: `{conversation.model}`"
                     + (f" ({conversation.backend})" if conversation.backend else ""))
    if conversation.params:
        settings = ", ".join(f"{k}={v}" for k, v in sorted(conversation.params.items()))
        lines.append(f"- sampling: {settings}")
    if conversation.system:
        lines += ["", "## System", "", conversation.system]
    for message in messages:
        heading = ROLE_TITLES.get(message.role, message.role.title())
        if message.status not in ("done", "streaming"):
            heading += f" ({message.status})"
        lines += ["", f"## {heading}", ""]
        if message.reasoning:
            lines += ["<details><summary>Thinking</summary>", "", message.reasoning.strip(), "",
                      "</details>", ""]
        lines.append(message.content)
        for record in message.attachments:
            lines += ["", f"![{_label(record)}]({Path(record['path']).as_uri()})"]
        if message.stats.get("images"):
            lines += ["", f"*images used as: {'; '.join(message.stats['images'])}*"]
        if message.rag.get("sources"):  # a RAG reply's citations, as shown under it
            lines += ["", f"*{message.rag.get('label', 'sources')}*", ""]
            lines += [f"- {source_from_dict(s).label}" for s in message.rag["sources"]]
    return "\n".join(lines).rstrip() + "\n"


def to_json(conversation: Conversation, messages: list[StoredMessage]) -> str:
    data = {
        "id": conversation.id, "title": conversation.title, "created": conversation.created,
        "updated": conversation.updated, "system": conversation.system,
        "model": conversation.model, "backend": conversation.backend,
        "params": conversation.params,
        "messages": [{"role": m.role, "content": m.content, "reasoning": m.reasoning,
                      "status": m.status, "stats": m.stats, "created": m.created,
                      **({"rag": m.rag} if m.rag else {}),
                      **({"attachments": list(m.attachments)} if m.attachments else {})}
                     for m in messages],
    }
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def targets(conversation: Conversation, where: str | None, cwd: Path) -> list[Path]:
    """The files an export writes, from what the user typed after /export."""
    base = f"{slug(conversation.title)}-{conversation.id}"
    if not where:
        return [cwd / f"{base}.md", cwd / f"{base}.json"]
    path = (cwd / Path(where).expanduser()).resolve()
    if path.is_dir():
        return [path / f"{base}.md", path / f"{base}.json"]
    if path.suffix.lower() in (".md", ".json"):
        if not path.parent.is_dir():
            raise BadInput(f"folder does not exist: {path.parent}")
        return [path]
    raise BadInput(f"cannot export to {where}", "give an existing folder, or a file ending in .md or .json")


def export_conversation(db: ChatDB, conversation_id: int, where: str | None = None,
                        cwd: Path | None = None) -> list[Path]:
    conversation = db.conversation(conversation_id)
    messages = [m for m in db.messages(conversation_id) if m.content or m.reasoning or m.attachments]
    written = []
    for path in targets(conversation, where, cwd or Path.cwd()):
        render = to_json if path.suffix.lower() == ".json" else to_markdown
        try:
            atomic_write(path, render(conversation, messages))
        except OSError as exc:  # a read-only folder, a full disk: a message, not a crash
            raise EdgeAIError(f"cannot write {path}: {exc.strerror or exc}") from None
        written.append(path)
    return written
