# Set-up and everyday commands. Each target creates (or reuses) the virtual environment in .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-fast typecheck lint format bench bundle clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[test]'
	touch $(STAMP)

## Set up (first time) and open the app.
run: $(STAMP)
	$(VENV)/bin/transfer-studio

## Set up (first time), then lint, check the import layers, type-check, and run the whole test suite
## headless, slow end-to-end tests included (what CI runs).
test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest

## The edit loop: lint, import layers and the tests not marked slow (no type-check, no subprocesses).
test-fast: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -m "not slow"

## Type-check the engine and the window (mypy; its settings are [tool.mypy] in pyproject.toml).
typecheck: $(STAMP)
	$(VENV)/bin/mypy

## Lint and check formatting only.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

## Reformat the code and apply ruff's safe fixes.
format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## Build the double-clickable app in dist/TransferStudio/ (PyInstaller; see packaging/build.sh).
bundle: $(STAMP)
	$(PY) -c "import PyInstaller" 2>/dev/null || $(PY) -m pip install -e '.[package]'
	PYTHON=$(PY) packaging/build.sh

## Remove the virtual environment and build outputs.
clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache .mypy_cache
