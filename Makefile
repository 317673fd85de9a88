# The short verbs. `make run` and `make test` work on a fresh machine with Python 3.11+.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint docs bench chaos clean

$(STAMP): pyproject.toml setup.cfg
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[server,test,dev,embedded-redis,bench]'
	touch $(STAMP)

run: $(STAMP)  ## serve the example app (private Redis, a worker, gunicorn) on 127.0.0.1:$${PORT:-8000}
	$(PY) -m example_app.run

test: $(STAMP)  ## the whole suite, against a Redis server it starts itself
	$(PY) -m pytest

lint: $(STAMP)  ## ruff (lint + format check), mypy, and the import contracts (import-linter)
	$(VENV)/bin/ruff check flask_idms_webhooks example_app tests bench
	$(VENV)/bin/ruff format --check flask_idms_webhooks example_app tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

docs: $(STAMP)  ## the Sphinx docs, warnings as errors
	$(VENV)/bin/sphinx-build -W --keep-going -q -b html docs docs/_build/html

bench: $(STAMP)  ## triggers, polls, workers and the engine (SQLite, PostgreSQL, the iMIS double) against bare baselines (wrk or Python load, 127.0.0.1 only); results in bench/results/
	$(PY) -m bench

chaos: $(STAMP)  ## a storm: 30 jobs, a worker (and its work-horse) SIGKILLed every ~5 s; report accepted, sealed, re-run, stuck, lost
	$(PY) -m bench.chaos

clean:
	rm -rf $(VENV) docs/_build instance
