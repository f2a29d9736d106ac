# Two commands for a newcomer: `make run` and `make test`. Each sets itself up: a virtualenv with
# pinned dependencies, the generated protobuf code, and the Kafka broker jars in .cache/.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PROTOS := $(wildcard protos/retail/v1/*.proto)
GENERATED := protos/retail/v1/.generated-stamp
JARS := .cache/kafka-4.4.0/jars/.complete

.PHONY: run test lint bench setup clean

run: setup
	RETAIL_METRICS_ADDRESS=$${RETAIL_METRICS_ADDRESS-127.0.0.1:9464} $(PY) -m services.cli run

test: setup lint
	$(PY) -m pytest $(PYTEST_ARGS)

bench: setup
	$(PY) -m bench

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

setup: $(STAMP) $(GENERATED) $(JARS)

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed, found " + sys.version.split()[0] + ": set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $@

$(GENERATED): $(STAMP) $(PROTOS) protos/generate.py
	$(PY) protos/generate.py
	@touch $@

$(JARS): $(STAMP) services/localkafka/pom.xml
	$(PY) -m services.localkafka fetch

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache protos/retail/v1/*_pb2*.py* $(GENERATED)
