"""What a reply in flight is (`Job`) and the messages its worker posts to the chat screen.

Boundary: data only, and no widget: the screen keeps the view a reply is shown in (its
`replies`), so nothing of the UI travels into the worker. The turn worker (thread) posts these
and never waits for them: it holds the model's lock while it streams, and a worker waiting on
the UI would deadlock a UI waiting for the lock.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from textual.message import Message

from edgeai.chat.turn import Outcome, Turn
from edgeai.chatdb import Conversation
from edgeai.runtime.loaded import LoadedModel
from edgeai.types import GenParams


@dataclass
class Job:
    """One reply in flight: the turn begun in chat.db, and how to stop it."""

    model: LoadedModel
    turn: Turn
    params: GenParams
    stop: threading.Event

    @property
    def conversation(self) -> Conversation:
        return self.turn.conversation

    @property
    def reply_id(self) -> int:
        return self.turn.reply.id


class ReplyText(Message):
    """More of a reply, from the turn worker."""

    bubble = False

    def __init__(self, job: Job, text: str, reasoning: str) -> None:
        super().__init__()
        self.job, self.text, self.reasoning = job, text, reasoning


class ReplyContext(Message):
    """Where the reply's documents come from (RAG): searching, then the strategy and sources."""

    bubble = False

    def __init__(self, job: Job, rag: dict | None, note: str | None = None) -> None:
        super().__init__()
        self.job, self.rag, self.note = job, rag, note


class ReplyDone(Message):
    """The reply is in chat.db (its KV state may still be being saved)."""

    bubble = False

    def __init__(self, job: Job, outcome: Outcome) -> None:
        super().__init__()
        self.job, self.outcome = job, outcome
