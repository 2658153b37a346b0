"""Speech: audio in (`stt.py`: Whisper through faster-whisper or openai-whisper, files and live
input decoded by `audio.py`) and audio out (`tts.py`: piper, espeak-ng when piper is missing).

Nothing here imports a speech framework at module level: engines are "module:Class" strings in
registries, imported when chosen, so `edgeai --help` and the chat's first paint stay light.
"""
