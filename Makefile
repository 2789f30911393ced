# Set-up is part of every target: a fresh machine needs only Python 3.11 and make.
# Every install comes from requirements.lock (exact versions and hashes of the whole tree);
# `make lock` refreshes it from pyproject.toml. See docs/dependencies.md.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV := $(BIN)/uv
STAMP := $(VENV)/.installed
LOCK := requirements.lock
LOCK_CONSTRAINTS := lock-constraints.txt
# uv, at the version the lock pins (the lock is its one source), is put into the venv by pip.
UV_VERSION = $(shell sed -n 's/^uv==\([^ ]*\).*/\1/p' $(LOCK) 2>/dev/null)
# The CPU build of torch (2.13.0+cpu) is not on PyPI: it comes from the wheel folder pip is
# configured with, if any (PIP_FIND_LINKS or pip's find-links setting), else from PyTorch's
# CPU wheel index. Set TORCH_FIND_LINKS to a folder or page of your own to override.
TORCH_FIND_LINKS ?= $(or $(PIP_FIND_LINKS),$(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null),https://download.pytorch.org/whl/cpu/torch/)
# the platform the lock is for (CI's and the Dockerfile's): Linux x86_64, CPython 3.11
LOCK_TARGET := --python-version 3.11 --python-platform x86_64-manylinux_2_28

.PHONY: demo test lint lock lock-check bench ui clean

$(UV):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q $(if $(UV_VERSION),"uv==$(UV_VERSION)","uv")

# The locked set exactly (sync also removes what the lock does not name), then the project
# itself without resolving anything (its build backend, setuptools, is in the lock too).
$(STAMP): $(LOCK) pyproject.toml | $(UV)
	$(UV) pip sync -q --python $(BIN)/python --require-hashes \
	  --find-links $(TORCH_FIND_LINKS) $(LOCK)
	$(UV) pip install -q --python $(BIN)/python --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	touch $(STAMP)

# Resolve pyproject.toml (every extra) again for the lock's platform, keeping the locked
# versions that still fit; `make lock UPGRADE=1` moves everything to the newest that fits,
# `make lock UPGRADE_PACKAGE=dask` only that package (and what it needs).
lock: | $(UV)
	$(UV) pip compile -q pyproject.toml --all-extras --generate-hashes $(LOCK_TARGET) \
	  -c $(LOCK_CONSTRAINTS) --find-links $(TORCH_FIND_LINKS) \
	  $(if $(UPGRADE),--upgrade) $(if $(UPGRADE_PACKAGE),--upgrade-package $(UPGRADE_PACKAGE)) \
	  --custom-compile-command "make lock" -o $(LOCK)

# Fails with one line naming `make lock` when the lock no longer satisfies pyproject.toml.
lock-check: $(STAMP)
	$(BIN)/python tools/check_lock.py pyproject.toml $(LOCK) $(LOCK_CONSTRAINTS)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/annotate demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lock-check lint
	HF_HUB_OFFLINE=1 $(BIN)/pytest -q

bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python bench/bench_pipeline.py

ui: $(STAMP)
	ANNOTATION_HOME=$${ANNOTATION_HOME:-$$PWD/annotation_home} \
	DAGSTER_HOME=$${ANNOTATION_HOME:-$$PWD/annotation_home}/dagster \
	$(BIN)/dagster dev -m definitions

clean:
	rm -rf $(VENV) annotation_home .pytest_cache .mypy_cache .ruff_cache
