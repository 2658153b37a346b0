"""The chat engine: one turn over any backend, kept in chat.db, for every surface (the Textual
app `edgeai.tui`, `edgeai chat --plain`, later the server).

    history.py        stored rows -> messages; fitting them to the context window
    store.py          opening chat.db (the `--reset-db` path); whether a conversation exists
    turn.py           begin_turn / run_turn: one turn, every chat.db write of it
    rag.py            a turn's retrieval, composition and citations; a chat's own collection
    kv.py             a conversation's KV cache on disk: save, restore (`prepare`), size cap
    conversations.py  a new chat's title; deleting and clearing a conversation

No UI here, and nothing heavy at import: a surface imports the modules it uses.
"""
