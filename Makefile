# RegLab. Every target creates .venv/ at the repository root when missing and installs into it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test test-fast lint bench gpu-check migrate faults clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) scripts/demo.py

test: $(STAMP)
	bash scripts/ensure-services.sh
	bash scripts/ensure-browser.sh
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
	$(PY) benchmarks/sweep.py

# On a machine with a CUDA GPU: the cuda-marked tests (a single run, a batched ensemble, a pack,
# resume with CUDA RNG state, out of memory), then the ensemble benchmark at 1, 32 and 256
# members on the GPU, at most 5 minutes.
gpu-check: $(STAMP)
	$(PY) -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU here')"
	$(PY) -m pytest tests/regcore/test_cuda.py tests/regcore/test_provenance.py tests/regcore/test_system_metrics.py -m cuda -q -rs
	timeout 300 $(PY) benchmarks/ensemble.py --device cuda --members 1 32 256 --repeats 1

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
