# Set-up and the everyday commands. `make test` and `make train` create the virtual environment
# on first use, so each is one command on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: setup test test-fast train lint bench comparison conversion

setup: $(VENV)/.installed

# Prefer a CPU build of torch that lies on this machine's disk (--no-index --no-deps: only that
# wheel, never a download; its dependencies come with the project install below);
# anywhere else the project's open `torch>=2.2` takes whatever torch the user has or pip picks.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --no-index --no-deps torch==2.13.0 2>/dev/null || echo "no local CPU torch 2.13.0; pip chooses torch"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

test: setup
	$(PY) -m pytest -q $(ARGS)

# Without the tests marked slow (the multi-process DDP sweep): for quick iterations.
test-fast: setup
	$(PY) -m pytest -q -m "not slow" $(ARGS)

train: setup
	$(PY) train.py $(ARGS)

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: setup
	$(PY) benchmarks/throughput.py $(ARGS)

# The full comparison (README "Results"): resumable, two trainings side by side.
comparison: setup
	$(PY) scripts/comparison.py $(ARGS)

# README "Conversion": teachers, students and the agreement table; resumable (ARGS="--out DIR").
conversion: setup
	$(PY) scripts/conversion.py $(ARGS)
