# The README's two commands: `make test` and `make demo`. Both set up .venv on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test demo lint venv clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch 2.13.0 (CPU) lies on this machine's disk; naming it first keeps pip from a multi-GB CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m ruff check src tests $(wildcard benchmarks tools)
	$(PY) -m pytest -q

demo: $(STAMP)
	$(PY) -m marginface demo

lint: $(STAMP)
	$(PY) -m ruff check src tests $(wildcard benchmarks tools)

clean:
	rm -rf $(VENV) build dist src/*.egg-info
