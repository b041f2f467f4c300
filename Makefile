# Quick start: `make demo` and `make test` work on a fresh machine with Python >= 3.10, make and access to PyPI.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-all lint install install-test completions clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "w2v2 needs Python >= 3.10")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools

# Stamps re-run the install whenever pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

# The demo and the tests never need the Hub: the demo names the embedded model, the tests run offline (an autouse
# fixture in tests/conftest.py; the stand-in Hub's tests serve 127.0.0.1). HF_HUB_OFFLINE makes that hold for
# anything else that would reach for huggingface.co too.
OFFLINE := HF_HUB_OFFLINE=1

demo: $(VENV)/.installed
	@$(BIN)/w2v2 --help
	@$(OFFLINE) $(BIN)/python -m w2v2cli.demo sample_audio

# The fast tier (<= 5 minutes on 2 cores); test-all adds the tests marked slow (training convergence, SIGKILL
# resume, torchrun, recipe runs, full-size models).
test: lint
	$(OFFLINE) $(BIN)/python -m pytest -q -m "not slow"

test-all: lint
	$(OFFLINE) $(BIN)/python -m pytest -q

lint: $(VENV)/.installed-test
	$(BIN)/ruff check w2v2cli tests benchmarks recipes

# The scripts ask `w2v2` itself for candidates, so they stay right as commands are added.
completions: $(VENV)/.installed
	for shell in bash zsh fish; do \
	  $(BIN)/python -c 'import sys; from typer._completion_shared import get_completion_script as g; \
	    print(g(prog_name="w2v2", complete_var="_W2V2_COMPLETE", shell=sys.argv[1]))' $$shell \
	    > completions/w2v2.$$shell || exit 1; \
	done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
