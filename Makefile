# make demo  - set up a virtual environment and run the demo shop (SQLite, eager tasks, local cache)
# make test  - set up, install/start the services the suite needs, run the whole suite twice:
#              on the production configuration (PostgreSQL, Redis, Celery worker, Chromium) and on the embedded one
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PG_URL ?= postgres://postgres@127.0.0.1:5432/test
PROD_ENV := DATABASE_URL=$(PG_URL) CACHE_URL=redis://127.0.0.1:6379/1 REDIS_URL=redis://127.0.0.1:6379/3 \
	TEST_CELERY_BROKER_URL=redis://127.0.0.1:6379/2
PYTEST := $(BIN)/python -m pytest -n 2 --dist loadgroup

.PHONY: venv demo test test-prod test-embedded lint bench

venv: $(BIN)/.installed

$(BIN)/.installed: requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	touch $@

demo: venv
	$(BIN)/python manage.py demo
	$(BIN)/python manage.py runserver 127.0.0.1:8000

test: venv
	bash scripts/services.sh
	$(BIN)/ruff check .
	$(MAKE) test-prod
	$(MAKE) test-embedded

test-prod: venv
	$(PROD_ENV) $(PYTEST) -p no:cacheprovider

test-embedded: venv
	$(PYTEST) -p no:cacheprovider -m "not integration and not browser"

lint: venv
	$(BIN)/ruff check .

bench: venv
	$(BIN)/python benchmarks/ingest.py
