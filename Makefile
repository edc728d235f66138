# The two commands of the README: `make demo` and `make test`. Each sets up .venv first if needed.
VENV := .venv
BIN := $(VENV)/bin

.PHONY: env demo demo-weights test test-fast

env:
	@bash scripts/setup_env.sh

demo: env
	$(BIN)/politeteacher demo

test: env
	$(BIN)/python -m pytest -q

test-fast: env
	$(BIN)/python -m pytest -q -m "not slow"

# The demo's pre-trained weights (politeteacher/weights/demo_source_R18_GN.pkl), made again from scratch:
# about 80 minutes on 2 CPU cores. Uses runs/demo_source; add FORCE=--force to start that over.
demo-weights: env
	$(BIN)/politeteacher demo --pretrain --output-dir runs/demo_source $(FORCE)
	cp runs/demo_source/demo_source_R18_GN.pkl politeteacher/weights/
