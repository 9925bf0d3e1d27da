# Two entry points: `make demo` and `make test`. Both bootstrap .venv with pip if missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(BIN)/python:
	@test -n "$(PYTHON)" || { echo "need python3.11 (or python3) on PATH"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mercato demo

test: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/lint-imports  # layer contracts in pyproject.toml [tool.importlinter]
	$(BIN)/mercato engine real build --if-possible  # once per machine (~12 min); cached under ~/.cache/mercato
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

bench: $(STAMP)
	$(BIN)/mercato bench mechanisms

clean:
	rm -rf $(VENV) results .pytest_cache .ruff_cache
