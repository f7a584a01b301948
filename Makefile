# Set-up is idempotent: a fresh clone gets .venv on first use, later calls only re-install when pyproject changes.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test bench lint clean reinstall-llama tools llama-tools

# The editable install leaves our modules uncompiled, and where PYTHONDONTWRITEBYTECODE is set (some CI images and
# sandboxes) every launch compiled them again (~0.3 s an app start; the suite launches tuillm many times). compileall
# writes only what changed (< 1 s).
BYTECODE = $(PY) -m compileall -q core convert tui

run: $(STAMP)
	@$(BYTECODE)
	$(VENV)/bin/tuillm

# One pytest worker per CPU (at most 4: a worker's heavy tests take a few GB), each on its own CPUs (tests/conftest.py);
# a file's tests stay on one worker, so its module fixtures (a quantized model, a trained adapter) are built once.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); [ $$n -gt 4 ] && n=4; [ $$n -lt 2 ] && n=0; echo $$n)

test: lint tools
	@$(BYTECODE)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

# The end-to-end TUI tests drive the real binary in tmux.
tools:
	@command -v tmux >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			apt-get update -qq && apt-get install -y -qq tmux >/dev/null; \
		else echo "tmux is not installed: install it to run the end-to-end TUI tests"; fi; }

bench: $(STAMP)
	@for f in tests/bench/*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

# ruff, then the import contracts of pyproject.toml ([tool.importlinter]). The editable install maps tuillm.* with an
# import hook that import-linter cannot walk, so it reads a tree of links named as the installed packages.
IMPORTS := $(VENV)/importlinter
lint: $(STAMP)
	$(VENV)/bin/ruff check core convert tui tests tools
	@mkdir -p $(IMPORTS)/tuillm && touch $(IMPORTS)/tuillm/__init__.py
	@for d in core convert tui; do ln -sfn ../../../$$d $(IMPORTS)/tuillm/$$d; done
	cd $(IMPORTS) && PYTHONPATH=. ../bin/lint-imports ../../pyproject.toml

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip setuptools wheel

# llama.cpp build flags. On x86-64 a portable AVX2 build: a -march=native build enables AMX kernels, and those
# crash llama.cpp 0.3.x (SIGSEGV in decode) on AMX CPUs such as Sapphire Rapids. Elsewhere (Apple Silicon, ARM)
# the defaults are right. A GPU build: `make LLAMA_CMAKE_ARGS="-DGGML_CUDA=on" reinstall-llama` (see README).
UNAME_M := $(shell uname -m)
ifeq ($(UNAME_M),x86_64)
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
else
LLAMA_CMAKE_ARGS ?=
endif
LLAMA_VERSION := 0.3.36
# llama.cpp's llama-quantize, llama-imatrix and llama-perplexity, built from the same llama.cpp as the binding and
# cached in ~/.cache/tuillm/llama-tools (tools/build_llama_tools.sh): the first set-up builds them, later ones copy.
TOOLS_STAMP := $(VENV)/bin/llama-tools.version
BUILD_TOOLS = tools/build_llama_tools.sh $(VENV)/bin $(LLAMA_VERSION) $(LLAMA_CMAKE_ARGS)

# torch is pinned to the CPU build on disk first: an unpinned resolve would pull a multi-GB CUDA build.
# llama-cpp-python compiles from source once; pip caches the wheel it builds.
$(STAMP): pyproject.toml | $(PY) $(TOOLS_STAMP)
	$(PY) -m pip install "torch==2.13.0"
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PY) -m pip install "llama-cpp-python==$(LLAMA_VERSION)"
	$(PY) -m pip install -e ".[train,dev]"
	touch $(STAMP)

# Rebuilds llama.cpp with other flags (pip's wheel cache would otherwise hand back the old build); the tools follow.
reinstall-llama: | $(PY)
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PY) -m pip install --force-reinstall --no-deps --no-cache-dir \
		"llama-cpp-python==$(LLAMA_VERSION)"
	$(BUILD_TOOLS)

# A failed build stops the set-up with one line (and keeps the build log in the cache folder).
$(TOOLS_STAMP): tools/build_llama_tools.sh | $(PY)
	$(BUILD_TOOLS)

# Again now, ignoring the cache (a changed compiler, a suspect build).
llama-tools: | $(PY)
	TUILLM_TOOLS_REBUILD=1 $(BUILD_TOOLS)

clean:
	rm -rf $(VENV)
