# The two commands a new user needs: `make run` and `make test`.
# Both create the virtualenv on first use: `make run` installs requirements.txt (the
# service's own packages), `make test`, `make lint` and `make typecheck` requirements-dev.txt
# (those plus the test and development tools).
PYTHON ?= python3.11
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: run test lint typecheck bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)

$(VENV)/.installed: requirements.txt constraints.txt | $(BIN)/python
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt constraints.txt | $(BIN)/python
	$(BIN)/pip install --disable-pip-version-check -q -r requirements-dev.txt
	touch $@ $(VENV)/.installed

# The embedded service: SQLite, demo data, web server + Celery worker + beat.
# Ctrl-C stops all three. PORT=8001 make run serves on another port.
# A development run: DEBUG=true (settings refuse a non-debug start without SECRET_KEY).
run: export DEBUG ?= true
run: $(VENV)/.installed
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py load_demo
	PATH="$(abspath $(BIN)):$$PATH" PORT="$${PORT:-8000}" exec $(BIN)/honcho -f Procfile.dev start

# The test suite, on DATABASE_URL (SQLite by default). Extra pytest args: make test ARGS="-k lock"
test: $(VENV)/.installed-dev
	$(BIN)/pytest $(ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy with the Django and DRF plugins (pyproject.toml); they import the settings.
typecheck: export DEBUG ?= true
typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

# The load benchmark (docs/benchmark.md; bench/, outside the product): the production
# server against the local PostgreSQL, in a database of its own (created if missing),
# with live pushes and rate limit counters in the local Redis, as in production, and
# pgbench on the same tables in turns. Full size by default;
# make bench ARGS="--clients 32 --duration 60" to change it (python -m bench --help).
# requirements-dev.txt: the load client's uvloop.
BENCH_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/bench
BENCH_REDIS_URL ?= redis://127.0.0.1:6379/0
BENCH_CACHE_URL ?= redis://127.0.0.1:6379/2
bench: $(VENV)/.installed-dev
	DATABASE_URL=$(BENCH_DATABASE_URL) REDIS_URL=$(BENCH_REDIS_URL) CACHE_URL=$(BENCH_CACHE_URL) $(BIN)/python -m bench $(ARGS)
