# mojaflow: `make run` runs everything on this machine; `make test` runs the tests. Both set themselves up.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: install run test e2e lint bench lock clean record-histories

$(INSTALLED): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "mojaflow needs Python 3.11 or newer: set PYTHON=python3.11")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(INSTALLED)

install: $(INSTALLED)

# RUN_ARGS="--workers 3": more worker processes (README, "Run it")
run: install
	$(PY) -m mojaflow.launcher $(RUN_ARGS)

# The suite mostly waits (servers, timers, killed workers): two processes (pytest-xdist, each with its own stack,
# a test module's tests kept together) take ~14 min instead of ~24 here. PYTEST_ARGS="-n 0" runs it in one.
test: install
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -n auto --maxprocesses 2 --dist loadscope $(PYTEST_ARGS)
	$(MAKE) e2e

# End to end against the real Payment Manager SDK and the Mojaloop Testing Toolkit (e2e/): installs them outside
# the repository once (~/.cache/mojaflow-e2e, e2e/install.sh), then runs e2e/tests.
e2e: install
	bash e2e/install.sh >/dev/null
	$(PY) -m pytest e2e/tests $(E2E_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# Re-record tests/histories/ (one history per workflow path) against the real stack: only while nothing is
# deployed (README, "Re-recording the history corpus").
record-histories: install
	$(PY) -m tests.histories.record

bench: install
	$(PY) bench/bench.py $(BENCH_ARGS)

# Re-pin every dependency after changing pyproject.toml (needs network; commit the result).
lock: install
	$(PY) -m pip install --quiet uv
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache
