# Set-up is idempotent: a fresh clone gets .venv on first use, later calls only re-install when pyproject changes.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test bench lint clean

run: $(STAMP)
	$(VENV)/bin/tuillm

test: $(STAMP)
	$(VENV)/bin/ruff check core convert tui tests
	$(PY) -m pytest

bench: $(STAMP)
	@for f in tests/bench/*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

lint: $(STAMP)
	$(VENV)/bin/ruff check core convert tui tests

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip setuptools wheel

# torch is pinned to the CPU build on disk first: an unpinned resolve would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install "torch==2.13.0"
	$(PY) -m pip install -e ".[train,dev]"
	touch $(STAMP)

clean:
	rm -rf $(VENV)
