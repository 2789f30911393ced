# Set-up is part of every target: a fresh machine needs only Python 3.11 and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench ui clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/annotate demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	HF_HUB_OFFLINE=1 $(BIN)/pytest -q
	HF_HUB_OFFLINE=1 $(BIN)/python ../shared/contract_check.py $(BIN)/annotate --with-review
	# the same contracts on the scale-out warehouse (Parquet files instead of one DuckDB file)
	HF_HUB_OFFLINE=1 ANNOTATION_WAREHOUSE_BACKEND=parquet \
	  $(BIN)/python ../shared/contract_check.py $(BIN)/annotate --with-review

bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python bench/bench_pipeline.py

ui: $(STAMP)
	ANNOTATION_HOME=$${ANNOTATION_HOME:-$$PWD/annotation_home} \
	DAGSTER_HOME=$${ANNOTATION_HOME:-$$PWD/annotation_home}/dagster \
	$(BIN)/dagster dev -m definitions

clean:
	rm -rf $(VENV) annotation_home .pytest_cache .mypy_cache .ruff_cache
