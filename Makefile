# Two entry points: `make demo` (the whole pipeline on procedural data) and `make test`.
# Each creates the virtualenv it needs on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e ".[train,serve,eval,test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/sae demo --out out/demo

test: $(STAMP)
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/pytest tests/benchmarks --benchmark-only --benchmark-json=out/bench/pytest-benchmark.json

clean:
	rm -rf out .pytest_cache
