# Two commands on a fresh machine:  `make demo`  (install + run the demo)  and  `make test`  (install + tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU build by default (a local wheel on the project machines). GPU users: make demo TORCH_SPEC="torch"
# after choosing their CUDA index, e.g. PIP_INDEX_URL=https://download.pytorch.org/whl/cu124
TORCH_SPEC ?= torch==2.13.0
DEMO_OUT ?= celltrack-demo

.PHONY: demo test install install-test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.torch: | $(BIN)/python
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.torch
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.torch
	$(BIN)/python -m pip install --quiet -e ".[test,bench,video]"
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

demo: install
	$(BIN)/celltrack demo --out $(DEMO_OUT) --overwrite

lint: install-test
	$(BIN)/ruff check src tests benchmarks

test: install-test lint
	$(BIN)/python -m pytest -q

bench: install-test
	for b in benchmarks/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .ruff_cache
