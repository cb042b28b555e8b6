# The two commands a newcomer needs: `make run` and `make test`. Everything they need is
# installed from requirements.txt into .venv on first use.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

# `make test` talks to real servers; these are the local defaults (DESIGN section 8).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/alertflow
TEST_REDIS_URL ?= redis://127.0.0.1:6379/0

.PHONY: run test lint format bench bench-deps venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

run: venv
	$(BIN)/python manage.py run

test: venv
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} REDIS_URL=$${REDIS_URL:-$(TEST_REDIS_URL)} \
		$(BIN)/pytest $(PYTEST_ARGS)
	# The tests marked `sqlite` (claim, settle, due poller, fan-out, idempotency, cancel) again on
	# SQLite, the database `make run` uses. Exit code 5: PYTEST_ARGS selected none of them.
	REDIS_URL=$${REDIS_URL:-$(TEST_REDIS_URL)} \
		$(BIN)/pytest --ds config.test_settings_sqlite -m sqlite $(PYTEST_ARGS) || [ $$? -eq 5 ]
	$(BIN)/lint-imports
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

lint: venv
	$(BIN)/lint-imports
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: venv bench-deps
	$(BIN)/python -m bench.all

# What only the benchmarks need (bench/requirements.txt: django-post_office for bench.postoffice),
# into the same virtualenv: nothing of the product imports them. And Debian's packages wrk, the C
# load generator of bench.accept and bench.e2e, and valgrind, bench.instructions' counter,
# installed with apt-get when missing.
bench-deps: $(VENV)/.bench-installed
	@missing=""; for tool in wrk valgrind; do command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
		sudo=""; if [ "$$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then sudo="sudo"; fi; \
		{ $$sudo apt-get update -q && $$sudo apt-get install -y -q --no-install-recommends $$missing; } \
			|| echo "could not install$$missing: bench.accept and bench.e2e take --load httpx without wrk" >&2; \
	fi

$(VENV)/.bench-installed: bench/requirements.txt $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -r bench/requirements.txt
	touch $@

clean:
	rm -rf var/ $(VENV)
