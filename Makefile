# poemrag — `make ingest` loads the Tang corpus, `make test` runs the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
ARGS   ?=

.PHONY: setup ingest sample test test-fast lint clean

setup: $(VENV)/.installed

# torch is pinned first: 2.13.0 is the CPU build; an unpinned torch pulls a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

ingest: setup
	$(BIN)/python -m poemrag.ingest $(ARGS)

sample: setup
	$(BIN)/python -m poemrag.ingest --sample $(ARGS)

test: setup
	$(BIN)/python -m pytest $(ARGS)

test-fast: setup
	$(BIN)/python -m pytest -m "not slow and not integration" $(ARGS)

lint: setup
	$(BIN)/ruff check poemrag training tests

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
