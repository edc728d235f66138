# The two commands of the README: `make demo` and `make test`. Each sets up .venv first if needed.
VENV := .venv
BIN := $(VENV)/bin

.PHONY: env demo test test-fast

env:
	@bash scripts/setup_env.sh

demo: env
	$(BIN)/politeteacher demo

test: env
	$(BIN)/python -m pytest -q

test-fast: env
	$(BIN)/python -m pytest -q -m "not slow"
