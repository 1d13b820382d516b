"""``python -m bench [--quick]``: poemrag vs the LangChain baseline (see bench/harness.py)."""

import sys

from bench.harness import main

sys.exit(main())
