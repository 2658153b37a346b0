"""`edgeai serve --store`: API conversations kept in chat.db, so they show in the chat app.

Boundary: a finished chat request and its reply in, chat.db rows out (nothing else). An API
client sends the whole history with every request; a request whose history (system prompt and
earlier messages) is what this server last stored for a conversation continues that
conversation, anything else starts a new one, titled from its first question. The match is
kept for the server's lifetime. Each request's new messages are written in one transaction
(WAL): a `kill -9` loses at most the reply in flight, never a stored row.
"""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Any

from edgeai.chat.conversations import title_from
from edgeai.chatdb import ChatDB
from edgeai.types import Message


def _key(messages: list[Message]) -> str:
    raw = json.dumps([(m.role, m.content) for m in messages], ensure_ascii=False)
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiStore:
    def __init__(self, db: ChatDB, model_id: str, backend: str) -> None:
        self.db, self.model_id, self.backend = db, model_id, backend
        self._known: dict[str, int] = {}  # history key -> conversation id
        self._lock = threading.Lock()

    def __call__(self, request: Any, reply: Any) -> None:
        messages = request.prompt
        if not isinstance(messages, list):  # a raw completion is not a conversation
            return
        turns = [m for m in messages if m.role in ("user", "assistant") and m.content]
        system = next((m.content for m in messages if m.role == "system"), None)
        if not turns or turns[-1].role != "user" or not reply.text:
            return
        final = reply.final
        stats = {"model": self.model_id, "backend": self.backend, "surface": "serve",
                 "prompt_tokens": final.prompt_tokens, "completion_tokens": final.completion_tokens,
                 "ttft_s": final.ttft_s, "gen_tps": final.gen_tps, "finish_reason": final.finish_reason}
        head = [Message("system", system)] if system else []
        with self._lock:
            conversation = self._known.pop(_key(head + turns[:-1]), None)
            if conversation is None:
                conversation = self.db.create_conversation(title_from(turns[0].content), system=system,
                                                           model=self.model_id, backend=self.backend).id
                new = turns
            else:
                new = turns[-1:]
            rows = [(m.role, m.content, {}) for m in new] + [("assistant", reply.text, stats)]
            self.db.add_messages(conversation, rows)
            self._known[_key(head + turns + [Message("assistant", reply.text)])] = conversation
