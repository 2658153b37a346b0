"""Local retrieval over the user's files: extraction (`extract`), chunking (`chunk`), embedders,
the store and search. Nothing is imported here, so `import edgeai.rag.x` stays as light as `x`.
"""
