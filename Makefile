# Two commands on a fresh machine:  `make demo` (the main job) and `make test`.
# Both create or update the project's virtual environment in .venv themselves.

PYTHON ?= python3
# The CPU build of PyTorch. On machines whose pip would pick a CUDA build, use e.g.
#   make TORCH="torch --index-url https://download.pytorch.org/whl/cpu" test
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
OUT ?= outputs/demo
DEMO_ARGS ?=

.PHONY: demo test browser bench-gpu venv clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Torch first, on its own, so that resolving the project's dependencies finds it
# installed and never pulls another build.
$(VENV)/.torch: | $(BIN)/python
	$(BIN)/python -m pip install -q $(TORCH)
	touch $@

$(VENV)/.runtime: pyproject.toml $(VENV)/.torch
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.test: pyproject.toml $(VENV)/.runtime
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@

venv: $(VENV)/.runtime

# The main job: generate the scenes dataset, train SegFormer-B0, its RoPE variants and
# BoostFormer-B0 from scratch (about 8 minutes on two CPU cores), report in $(OUT)/report.md.
# Rerunning picks up finished runs. Extra options: make demo DEMO_ARGS="--seeds 3 --steps 600"
demo: $(VENV)/.runtime
	$(BIN)/segformer-lab models
	$(BIN)/segformer-lab demo --out $(OUT) $(DEMO_ARGS)

# The page's browser test (tests/serving/test_page.py) drives Debian's chromium: installed here
# when missing and apt-get can (as root); where it cannot, that test is skipped and says so.
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    { apt-get install -y -q chromium || { apt-get update -q && apt-get install -y -q chromium; }; }; } || \
	  echo "make test: NO CHROMIUM and no way to install it (root + apt-get): the browser test will be SKIPPED"

# The layer contract (pyproject.toml: import-linter) first, then the tests in two processes
# (pytest-xdist), spread one by one; tests that share a module fixture stay in one process,
# so it is built once (tests/conftest.py groups them).
test: $(VENV)/.test browser
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup

# The GPU table of docs/benchmarks.md in one call of at most 8 minutes (transformers, a test
# extra, is the comparison), written to $(BENCH_OUT)/bench_gpu.{md,json}. On a machine
# without CUDA it runs a small CPU version in about a minute. On a GPU machine without
# network or venv, skip make: PYTHONPATH=src python3 benchmarks/bench_gpu.py --out DIR
# (docs/benchmarks.md).
BENCH_OUT ?= outputs/bench-gpu
bench-gpu: $(VENV)/.test
	$(BIN)/python benchmarks/bench_gpu.py --out $(BENCH_OUT)

clean:
	rm -rf $(VENV) outputs .pytest_cache
