# Every target creates .venv and installs what is missing on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-test

.PHONY: demo test bench tabular expo rrr study clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $@

demo: $(STAMP)
	$(BIN)/python -m experiments.demo.main --config=experiments/demo/configs/default.py

rrr: $(STAMP)
	$(BIN)/python -m experiments.rrr.main --config=experiments/rrr/configs/default.py

test: $(STAMP)
	$(BIN)/python -m pytest tests

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
