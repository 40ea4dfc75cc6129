# Works on a fresh machine with only Python 3.11 and pip: every target builds .venv first.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test lint typecheck demo bench docs clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,aws]'
	@touch $(STAMP)

test: $(STAMP) lint typecheck
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

demo: $(STAMP)
	$(BIN)/quiesce demo

bench: $(STAMP)
	$(BIN)/python bench/freeze_window.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

docs: $(STAMP)
	$(BIN)/python -m quiesce.reference docs
