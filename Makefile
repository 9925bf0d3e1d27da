# Two entry points: `make demo` and `make test`. Both bootstrap .venv with pip if missing.
# `make mutation` (slow, not part of `make test`): mutation scores, see docs/testing.md.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench mutation clean

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
	$(BIN)/ruff check src tests tools
	$(BIN)/lint-imports  # layer contracts in pyproject.toml [tool.importlinter]
	$(BIN)/mercato engine real build --if-possible  # once per machine (~12 min); cached under ~/.cache/mercato
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests tools
	$(BIN)/ruff format --check src tests

bench: $(STAMP)
	$(BIN)/mercato bench mechanisms

# mutmut over the modules in pyproject.toml [tool.mutmut]; scores to results/mutation/ (about 15 min on 2 cores)
$(VENV)/.installed-mutation: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,mutation]'
	@touch $@

mutation: $(VENV)/.installed-mutation
	$(BIN)/python tools/mutation.py

clean:
	rm -rf $(VENV) results mutants .pytest_cache .ruff_cache
