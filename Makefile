# Everything a fresh machine needs: Python 3.11 with pip. `make demo` and `make test` set up .venv themselves.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint bench install install-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[report]'   # report: plotly.js for `trajshard report`
	touch $@

# torch first, pinned: the CPU wheel (the loader's extra and Energon need torch; unpinned, pip would
# resolve a CUDA build and its GBs of libraries)
$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: install
	$(BIN)/trajshard demo demo_out

# two processes (pytest-xdist), a test file each at a time: the 2-core machine's second core works too
test: install-dev
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

lint: install-dev
	$(BIN)/ruff check trajshard tests bench
	$(BIN)/ruff format --check trajshard tests bench

bench: install-dev
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/tokenizer_speed.py
	$(BIN)/python bench/loader.py
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/lerobot_v3.py
	$(BIN)/python bench/jpeg_chroma.py

clean:
	rm -rf demo_out .pytest_cache .ruff_cache
