# Everything runs from .venv, created with pip from pyproject.toml when missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-slow test-all lint bench bounce-report mutation clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/newsletter demo

## the suite without the slow tests: the one to run often (CI runs test-slow after it)
test: $(STAMP)
	$(BIN)/pytest -q -m "not slow"

## the slow tests: kill-the-worker, browsers, long SMTP replies
test-slow: $(STAMP)
	$(BIN)/pytest -q -m slow

## everything
test-all: $(STAMP)
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check worker tests bench scheduler.py
	$(BIN)/ruff format --check worker tests bench scheduler.py
	$(BIN)/mypy worker scheduler.py
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python bench/throughput.py --subscribers 20000

## agreement of the bounce classifier with the labelled corpus, per MTA and per reason
bounce-report: $(STAMP)
	$(BIN)/python -m tests.bounce_report

## mutation testing of the rule and protocol modules, one module at a time against its own unit
## tests; prints the score table (docs/mutation.md). Slow: not part of CI.
mutation: $(STAMP)
	nice -n 10 $(BIN)/python -m tests.mutation $(MUTATION_ARGS)

clean:
	rm -rf $(VENV) data .pytest_cache build/mutation
