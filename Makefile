# RegLab. Every target creates .venv/ at the repository root when missing and installs into it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test test-fast lint bench migrate faults clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) scripts/demo.py

test: $(STAMP)
	bash scripts/ensure-services.sh
	$(PY) -m pytest tests

test-fast: $(STAMP)
	$(PY) -m pytest tests -m "not integration and not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check regcore service worker reglab tests benchmarks scripts
	$(VENV)/bin/ruff format --check regcore service worker reglab tests benchmarks scripts
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) benchmarks/overhead.py
	$(PY) benchmarks/ensemble.py
	$(PY) benchmarks/ingest.py

# Fault and security tests (real PostgreSQL, Redis, worker subprocesses), then docs/reliability.md
# from the figures they leave in var/reports/ (written even when a test fails; the exit status is
# pytest's).
faults: $(STAMP)
	bash scripts/ensure-services.sh
	mkdir -p var/reports
	rm -f var/reports/faults-*.json var/reports/faults-junit.xml var/reports/schemathesis.json
	$(PY) -m pytest tests/faults tests/security --junitxml=var/reports/faults-junit.xml; \
	status=$$?; $(PY) scripts/faults_report.py && exit $$status

migrate: $(STAMP)
	$(VENV)/bin/alembic upgrade head

clean:
	rm -rf $(VENV) var runs demo-out
