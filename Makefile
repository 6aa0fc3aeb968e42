# The two commands: `make run` and `make test`. Everything else is a step of theirs.
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 5000
PYTHON ?= python3
TEST_PG_URL ?= postgresql://postgres@127.0.0.1:5432/test
export FLASK_APP := app

.PHONY: run test test-sqlite test-postgres install install-dev vendor check clean

## Install, migrate, load demo data and serve web + worker on the embedded defaults.
run: install
	$(BIN)/flask db upgrade
	$(BIN)/flask seed demo
	@echo ""
	@echo "  Eventuall: http://127.0.0.1:$(PORT)"
	@echo "  Sign in as organiser@example.com (or host@, fan@): the code appears below, in the worker's log."
	@echo ""
	WORKER_IN_WEB=1 PORT=$(PORT) $(BIN)/gunicorn wsgi:app -c gunicorn.conf.py

## The whole suite on SQLite, then on PostgreSQL ($(TEST_PG_URL)).
test: test-sqlite test-postgres

test-sqlite: install-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-postgres: install-dev
	TEST_DATABASE_URL=$(TEST_PG_URL) $(BIN)/python -m pytest $(PYTEST_ARGS)

## Schema and models agree (CI runs it too).
check: install
	$(BIN)/flask db check

install: $(VENV)/.installed vendor
install-dev: $(VENV)/.installed-dev vendor

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

## Browser files from the npm registry (pinned in package-lock.json), served from static/vendor.
vendor: static/vendor/.installed

static/vendor/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	mkdir -p static/vendor
	cp node_modules/htmx.org/dist/htmx.min.js node_modules/htmx-ext-ws/dist/ws.min.js \
	   node_modules/livekit-client/dist/livekit-client.umd.js static/vendor/
	touch $@

clean:
	rm -rf $(VENV) node_modules static/vendor instance
