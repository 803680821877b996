# Two commands on a fresh machine:   make demo   and   make test
# Both create .venv (Python >= 3.11) and install gptlab into it; torch is installed first, pinned to the
# CPU wheel, so that packages depending on torch do not pull CUDA wheels.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast install system-deps clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[all,dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/gptlab demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

# Debian packages the full test suite uses when present: bubblewrap (the sandbox's isolation) and headless
# Chromium (the report's browser test). Needs root; .ci/run calls it.
system-deps:
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap chromium chromium-driver >/dev/null

clean:
	rm -rf $(VENV) demo_run .pytest_cache
