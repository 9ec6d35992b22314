# The two commands a new user needs: `make run` and `make test`.
# Both create the virtualenv and install requirements.txt on first use.
PYTHON ?= python3.11
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: run test lint bench

$(VENV)/.installed: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.txt
	touch $@

# The embedded service: SQLite, demo data, web server + Celery worker + beat.
# Ctrl-C stops all three. PORT=8001 make run serves on another port.
run: $(VENV)/.installed
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py load_demo
	PATH="$(abspath $(BIN)):$$PATH" PORT="$${PORT:-8000}" exec $(BIN)/honcho -f Procfile.dev start

# The test suite, on DATABASE_URL (SQLite by default). Extra pytest args: make test ARGS="-k lock"
test: $(VENV)/.installed
	$(BIN)/pytest $(ARGS)

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The load benchmark (docs/benchmark.md; bench/, outside the product): the production
# server against the local PostgreSQL, in a database of its own (created if missing),
# with live pushes and rate limit counters in the local Redis, as in production, and
# pgbench on the same tables in turns. Full size by default;
# make bench ARGS="--clients 32 --duration 60" to change it (python -m bench --help).
BENCH_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/bench
BENCH_REDIS_URL ?= redis://127.0.0.1:6379/0
BENCH_CACHE_URL ?= redis://127.0.0.1:6379/2
bench: $(VENV)/.installed
	DATABASE_URL=$(BENCH_DATABASE_URL) REDIS_URL=$(BENCH_REDIS_URL) CACHE_URL=$(BENCH_CACHE_URL) $(BIN)/python -m bench $(ARGS)
