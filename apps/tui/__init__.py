"""The Textual chat app, imported as `edgeai.tui` and launched by `edgeai chat`."""
