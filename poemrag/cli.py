"""Shared command-line plumbing: one-line errors instead of tracebacks."""

from __future__ import annotations

import sys
from collections.abc import Callable

from pydantic import ValidationError

from poemrag.errors import PoemragError

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


def run_cli(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run ``main``; print a user error on one line (exit 2) and Ctrl-C as a resumable stop."""
    try:
        return main(argv)
    except PoemragError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except ValidationError as exc:  # a POEMRAG_* setting with a bad value
        err = exc.errors()[0]
        where = ".".join(str(part) for part in err["loc"])
        print(f"error: invalid setting {where!r}: {err['msg']}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to continue", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as exc:  # disk full, read-only directory, permissions
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        return EXIT_ERROR
