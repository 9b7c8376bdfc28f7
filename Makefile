# Two commands do all the set-up on a fresh machine: `make run` (train SimCLR on the bundled
# digits, print test accuracy) and `make test` (install dev extras + test data, run the suite).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# torch first, pinned to the builds that install offline on the project's machines; override
# with `make TORCH="torch torchvision" ...` elsewhere.
ifeq ($(shell uname -m),aarch64)
TORCH ?= torch==2.9.1 torchvision==0.24.1
else
TORCH ?= torch==2.14.1 torchvision==0.29.1
endif
SUDO := $(shell [ "$$(id -u)" != 0 ] && command -v sudo >/dev/null && echo sudo)
FASHION_MNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: run test install dev data lint clean

run: install
	$(BIN)/contrastkit fit --threads 1

test: dev data
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/pytest -q

install: $(VENV)/.installed
dev: $(VENV)/.installed-dev

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps efficientnet_lite_pytorch
	touch $@

# Real Fashion-MNIST files from Debian (the tests read them; nothing is downloaded at run time),
# and Debian's headless chromium, in which tests/test_report.py renders the HTML run report.
data:
	@if [ ! -f $(FASHION_MNIST) ] && command -v apt-get >/dev/null; then \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq dataset-fashion-mnist; \
	fi
	@if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null; then \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium; \
	fi

lint:
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache
