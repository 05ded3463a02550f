# Two commands on a fresh machine: `make run` and `make test`. Both bootstrap .venv themselves.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "rillet needs Python >= 3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	$(BIN)/python -m compileall -q rillet
	@touch $(STAMP)

# The seed pipeline end to end (rillet demo): generated node logs, the Kubernetes API stand-in,
# moto's CloudWatch Logs, a real rillet process; prints what arrived, stops what it started.
run: $(STAMP)
	$(BIN)/rillet demo $(ARGS)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy rillet
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy rillet

# Benchmarks (not timed tests): records per CPU-second and peak RSS.
bench: $(STAMP)
	$(BIN)/python bench/engine_bench.py
	$(BIN)/python bench/parsers_bench.py
	$(BIN)/python bench/tail_bench.py
	$(BIN)/python bench/pipeline_bench.py
	$(BIN)/python bench/cloudwatch_bench.py
	$(BIN)/python bench/aws_outputs_bench.py
	$(BIN)/python bench/filters_bench.py
	$(BIN)/python bench/storage_bench.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache rillet.egg-info
