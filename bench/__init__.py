"""Rerunnable benchmarks for poemrag (results as JSON; see each module's docstring)."""
