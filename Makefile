# poemrag — `make ingest` loads the Tang corpus (runtime only, no torch), `make test` runs
# the tests (adds the training and benchmark stack).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
ARGS   ?=

.PHONY: runtime setup ingest sample search test test-fast lint clean

# `make ingest` needs only the runtime (ONNX encoder, Qdrant Edge/client): no torch.
runtime: $(VENV)/.runtime

$(VENV)/.runtime: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

# Tests, training and the benchmark add torch and the rest (the dev extra).
# torch is pinned first: 2.13.0 is the CPU build; an unpinned torch pulls a multi-GB CUDA build.
setup: $(VENV)/.installed

$(VENV)/.installed: $(VENV)/.runtime
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

ingest: runtime
	$(BIN)/python -m poemrag.ingest $(ARGS)

sample: runtime
	$(BIN)/python -m poemrag.ingest --sample $(ARGS)

search: runtime
	$(BIN)/python -m poemrag.search $(ARGS)

test: setup
	$(BIN)/python -m pytest $(ARGS)

test-fast: setup
	$(BIN)/python -m pytest -m "not slow and not integration" $(ARGS)

lint: setup
	$(BIN)/ruff check poemrag training tests bench ingest examples

clean:
	rm -rf $(VENV) .pytest_cache build dist *.egg-info
