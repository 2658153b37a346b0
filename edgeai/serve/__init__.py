"""`edgeai serve`: the chat engine over OpenAI's and Ollama's HTTP APIs.

    requests.py       JSON bodies -> ChatRequest (checked), ApiError
    engine.py         ChatRequest -> prompt (the chat engine's own steps, images routed) -> a job
    batcher.py        continuous batching on the backend's batched step (or one job at a time)
    app.py            Starlette: API key, CORS, body limit, /health, /metrics, /v1/models, tokenize
    openai_routes.py  /v1/chat/completions (text + image_url parts), /v1/completions, /v1/embeddings
    audio_routes.py   /v1/audio/transcriptions, /v1/audio/speech (OpenAI's shapes over edgeai.speech)
    ollama_routes.py  /api/chat, /api/generate, /api/tags, /api/show, /api/version (Ollama's)
    tools.py          function calling: forced-call schema, parsing calls out of a reply
    metrics.py        Prometheus counters and histograms
    store.py          --store: API conversations into chat.db
"""
