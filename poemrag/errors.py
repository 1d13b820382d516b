"""Errors that poemrag reports to users as one line, without a traceback."""


class PoemragError(Exception):
    """A problem the user can fix (bad input, missing file, mismatched model...).

    CLIs print ``str(error)`` on one line and exit with a non-zero status.
    """


class CorpusError(PoemragError):
    """The corpus source is missing, corrupt or does not match its pinned hash."""


class ModelError(PoemragError):
    """The encoder cannot be loaded or does not fit the collection."""


class StoreError(PoemragError):
    """The vector store cannot be opened, is locked, or holds an incompatible collection."""


class EmptyQueryError(PoemragError, ValueError):
    """The query has no text to search for."""


class SearchOptionError(PoemragError, ValueError):
    """A per-call search option that the retriever does not know, or a bad value for one."""


class RerankerError(ModelError):
    """The reranker (cross-encoder) cannot be found or loaded, or is not a cross-encoder."""
