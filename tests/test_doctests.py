"""The `>>>` examples in the library's docstrings run and print what they say."""

import doctest
import importlib
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "idexpo_jax"
MODULES = sorted(
    ".".join(("idexpo_jax", *p.relative_to(ROOT).with_suffix("").parts))
    for p in ROOT.rglob("*.py") if ">>> " in p.read_text())


def test_some_docstrings_have_examples():
  assert "idexpo_jax.models" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
  result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
  assert result.attempted > 0 and result.failed == 0, result
