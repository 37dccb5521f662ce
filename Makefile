# Every target creates .venv and installs what is missing on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-test

.PHONY: lint demo test test-min bench tabular expo expo-uci rrr study docs clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $@

demo: $(STAMP)
	$(BIN)/python -m experiments.demo.main --config=experiments/demo/configs/default.py

tabular: $(STAMP)
	$(BIN)/python -m experiments.tabular.main --config=experiments/tabular/configs/default.py

rrr: $(STAMP)
	$(BIN)/python -m experiments.rrr.main --config=experiments/rrr/configs/default.py

expo: $(STAMP)
	$(BIN)/python -m experiments.expo.main --config=experiments/expo/configs/default.py

# test: the whole suite, then the numerics tests again under a second XLA:CPU code path
# (IDEXPO_SECOND_CPU_PATH=1: tests/conftest.py sets tolerances.SECOND_CPU_PATH_XLA_FLAGS, i.e.
# reductions by XLA's own emitter instead of YNNPACK and code capped at AVX2), so that a tolerance
# that holds on this CPU's code path only fails here rather than on another machine.
# The files are the core numerics every other result rests on (masking, the one solver, the hard
# and soft curves, LIME, local linear fits, sensitivity-n); the rest of the suite runs once, so that
# `make test` stays within its time budget on a 2-core machine.
NUMERICS_TESTS := $(addprefix tests/test_,$(addsuffix .py,curves soft_curves masking lime \
	lstsq local_linear sensitivity))

test: $(STAMP)
	$(BIN)/python -m pytest -n auto tests
	IDEXPO_SECOND_CPU_PATH=1 $(BIN)/python -m pytest -n auto $(NUMERICS_TESTS)

# test-min: the library tests on the lowest versions pyproject.toml allows (.ci/constraints-min.txt)
# in a separate .venv-min; the experiment and benchmark tests need only the current versions.
MIN_VENV := .venv-min
MIN_STAMP := $(MIN_VENV)/.installed-min
NOT_LIBRARY_TESTS := $(addprefix --ignore=tests/test_,$(addsuffix .py,benchmarks common_training \
	compilation_cache config_check decoy_mnist demo expo_uci image_experiment study docs))

$(MIN_STAMP): pyproject.toml .ci/constraints-min.txt
	$(PY) -m venv $(MIN_VENV)
	$(MIN_VENV)/bin/pip install -q --upgrade pip
	$(MIN_VENV)/bin/pip install -q -c .ci/constraints-min.txt -e '.[test]'
	touch $@

test-min: $(MIN_STAMP)
	$(MIN_VENV)/bin/python -m pytest -n auto tests $(NOT_LIBRARY_TESTS)

# bench: torch first, pinned to the CPU wheel (never a CUDA build), then captum via the extra.
BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[bench]'
	touch $@

# Every section side by side in one run (explainers, tabular, train_step, pytorch, resnet_step,
# conv, error_vs_budget), into benchmarks/results.json and the tables of
# docs/benchmarks.md. One section: `python -m benchmarks.run --sections resnet_step`.
bench: $(BENCH_STAMP)
	$(BIN)/python -m benchmarks.run

# docs: the API reference (docs/api/, from the docstrings) and the reports, warnings as errors;
# then tests/test_docs.py checks that the built inventory lists every public name.
DOCS_STAMP := $(VENV)/.installed-docs

$(DOCS_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[docs]'
	touch $@

docs: $(DOCS_STAMP)
	rm -rf docs/_build
	$(BIN)/python -m sphinx -W --keep-going -q -b html docs docs/_build/html
	IDEXPO_DOCS_HTML=docs/_build/html $(BIN)/python -m pytest -q -p no:cacheprovider tests/test_docs.py
	@echo "docs: docs/_build/html/index.html"

study: $(STAMP)
	$(BIN)/python -m experiments.study.main --config=experiments/study/configs/digits.py:gradcam
	$(BIN)/python -m experiments.study.main --config=experiments/study/configs/tabular.py:breast_cancer,lime
	$(BIN)/python -m experiments.study.main --config=experiments/study/configs/tabular.py:breast_cancer,kernel_shap
	$(BIN)/python -m experiments.study.main --config=experiments/study/configs/digits.py:lime
	$(BIN)/python -m experiments.study.main --config=experiments/study/configs/digits.py:kernel_shap
	$(BIN)/python -m experiments.study.main --config=experiments/study/configs/tabular.py:wine,lime
	$(BIN)/python -m experiments.study.main --config=experiments/study/configs/tabular.py:wine,kernel_shap

clean:
	rm -rf $(VENV) $(MIN_VENV) .pytest_cache .hypothesis docs/_build

# ExpO's UCI table (autompgs, housing; results/expo_uci). The two data sets run as two processes.
expo-uci: $(STAMP)
	$(BIN)/python -m experiments.expo_uci.main --config=experiments/expo_uci/configs/default.py --config.datasets="('autompgs',)" & pid=$$!; \
	$(BIN)/python -m experiments.expo_uci.main --config=experiments/expo_uci/configs/default.py --config.datasets="('housing',)"; \
	rc=$$?; wait $$pid && exit $$rc

# lint: ruff (pyflakes-level checks) on the whole tree and basedpyright (pyright's checker, shipped
# with its own Node runtime on PyPI) on the library; both configured in pyproject.toml.
LINT_STAMP := $(VENV)/.installed-lint

$(LINT_STAMP): pyproject.toml $(STAMP)
	$(BIN)/pip install -q -e '.[lint]'
	touch $@

lint: $(LINT_STAMP)
	$(BIN)/ruff check idexpo_jax tests experiments benchmarks examples
	$(BIN)/basedpyright
