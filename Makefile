# The README's two commands are `make demo` and `make test`; each sets the environment up first.
VENV ?= .venv
PY := $(VENV)/bin/python
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup test lint demo plugin clean

setup:
	@bash scripts/setup.sh

lint: setup
	$(PY) -m ruff check backend training rs2sam2_qgis tests scripts bench

test: setup lint
	$(PY) -m pytest $(PYTEST_ARGS)

demo: setup
	$(PY) -m backend.cli demo

PLUGIN_OUT ?= dist
plugin:
	@/usr/bin/python3 scripts/build_plugin_zip.py --out $(PLUGIN_OUT)

clean:
	rm -rf dist build .pytest_cache .ruff_cache
