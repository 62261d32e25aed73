# The README's two commands are `make demo` and `make test`; each sets the environment up first.
VENV ?= .venv
PY := $(VENV)/bin/python
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup test lint format demo demo-model plugin clean

setup:
	@bash scripts/setup.sh

LINTED := backend training rs2sam2_qgis tests scripts bench
lint: setup
	$(PY) -m ruff check $(LINTED)
	$(PY) -m ruff format --check $(LINTED)

format: setup
	$(PY) -m ruff format $(LINTED)

test: setup lint
	$(PY) -m pytest $(PYTEST_ARGS)

demo: setup
	$(PY) -m backend.cli demo

PLUGIN_OUT ?= dist
plugin:
	@/usr/bin/python3 scripts/build_plugin_zip.py --out $(PLUGIN_OUT)

clean:
	rm -rf dist build .pytest_cache .ruff_cache

# The bundled demo model: trained by the project's own training package on synthetic scenes
# (seed, steps and time are printed and recorded in docs/benchmarks.md). DEMO_ARGS=--resume continues.
demo-model: setup
	$(PY) scripts/make_demo_model.py $(DEMO_ARGS)
