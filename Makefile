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
DEPLOY_LOCK := deploy/requirements.lock
CHECK_LOCK := tools/check_lock.py
# The CPU build of torch (2.13.0+cpu) is not on PyPI: it comes from the wheel folder pip is
# configured with, if any (PIP_FIND_LINKS or pip's find-links setting), else from PyTorch's
# CPU wheel index. Set TORCH_FIND_LINKS to a folder or page of your own to override.
TORCH_FIND_LINKS ?= $(or $(PIP_FIND_LINKS),$(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null),https://download.pytorch.org/whl/cpu/torch/)
# the platform the lock is for (CI's and the Dockerfile's): Linux x86_64, CPython 3.11
LOCK_TARGET := --python-version 3.11 --python-platform x86_64-manylinux_2_28

.PHONY: demo test lint lock lock-check bench ui clean

# uv itself, checked against the lock's hashes (its block of the lock as a requirements file);
# the first `make lock` of a new project, with no lock yet, takes the newest.
$(UV):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	sed -n '/^uv==/,/^[^ ]/{/^uv==/p;/^ /p}' $(LOCK) > $(VENV)/uv-requirements.txt 2>/dev/null || true
	if [ -s $(VENV)/uv-requirements.txt ]; then \
	  $(BIN)/python -m pip install -q --require-hashes -r $(VENV)/uv-requirements.txt; \
	else $(BIN)/python -m pip install -q uv; fi

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
# Then the deploy image's runtime set (no dev extra), resolved within the lock: same versions.
# Each lock records a fingerprint of what it was made from (tools/check_lock.py --stamp).
lock: | $(UV)
	$(UV) pip compile -q pyproject.toml --all-extras --generate-hashes $(LOCK_TARGET) \
	  -c $(LOCK_CONSTRAINTS) --find-links $(TORCH_FIND_LINKS) \
	  $(if $(UPGRADE),--upgrade) $(if $(UPGRADE_PACKAGE),--upgrade-package $(UPGRADE_PACKAGE)) \
	  --custom-compile-command "make lock" -o $(LOCK)
	$(BIN)/python $(CHECK_LOCK) --stamp pyproject.toml $(LOCK) $(LOCK_CONSTRAINTS)
	$(UV) pip compile -q pyproject.toml --extra k8s --generate-hashes $(LOCK_TARGET) \
	  -c $(LOCK) --find-links $(TORCH_FIND_LINKS) \
	  --custom-compile-command "make lock" -o $(DEPLOY_LOCK)
	$(BIN)/python $(CHECK_LOCK) --stamp pyproject.toml $(DEPLOY_LOCK) $(LOCK_CONSTRAINTS)

# Fails with one line naming `make lock` when a lock no longer matches pyproject.toml. It runs
# before anything is installed from the lock (it needs only Python; the venv's pip lends it
# `packaging` to name the requirement that no longer fits).
lock-check: | $(UV)
	$(BIN)/python $(CHECK_LOCK) pyproject.toml $(LOCK) $(LOCK_CONSTRAINTS)
	$(BIN)/python $(CHECK_LOCK) --subset-of $(LOCK) $(DEPLOY_LOCK)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/annotate demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# lock-check first (make runs prerequisites in order): a stale lock is refused before it is
# installed
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
