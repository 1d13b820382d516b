"""poemrag: cite a fitting line of classical Tang poetry for a modern Chinese chat message."""

__version__ = "0.1.0"
