# The README's two commands are `make demo` and `make test`; each sets the environment up first.
VENV ?= .venv
PY := $(VENV)/bin/python
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup test lint format demo demo-model plugin clean device-wheels device-check

setup:
	@bash scripts/setup.sh

LINTED := backend training rs2sam2_qgis tests scripts bench
lint: setup
	$(PY) -m ruff check $(LINTED)
	$(PY) -m ruff format --check $(LINTED)

format: setup
	$(PY) -m ruff format $(LINTED)

# Two pytest-xdist workers, one test module per work unit (module fixtures such as a server or the first-run
# set-up's environment are made once), longest modules first (tests/conftest.py). PYTEST_WORKERS=0: serial.
PYTEST_WORKERS ?= 2
PYTEST_PARALLEL := $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadscope --no-loadscope-reorder)
test: setup lint
	$(PY) -m pytest $(PYTEST_PARALLEL) $(PYTEST_ARGS)

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

# The GPU check (docs/gpu-check.md). `device-wheels` (here, with network to PyPI) fills the ignored
# build/device-wheels with what a lent GPU machine lacks; `device-check` runs there, in one go, and
# writes its report to $OUT (else out/device-check). Without CUDA it says so and exits 0.
DEVICE_WHEELS ?= build/device-wheels
DEVICE_PY ?= $(if $(wildcard $(PY)),$(PY),python3)
device-wheels: setup
	$(PY) scripts/device_wheels.py --out $(DEVICE_WHEELS)

device-check:
	$(DEVICE_PY) scripts/device_check.py --wheels $(DEVICE_WHEELS) $(DEVICE_ARGS)
