"""Packaging facts a user relies on: licence, type marker, one version, true lower bounds."""

import os
import re
import tomllib

import idexpo_jax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pyproject():
  with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
    return tomllib.load(f)


def test_licence_text_matches_the_declared_licence():
  meta = _pyproject()["project"]
  assert meta["license"] == "Apache-2.0" and meta["license-files"] == ["LICENSE"]
  with open(os.path.join(ROOT, "LICENSE")) as f:
    text = f.read()
  assert "Apache License" in text and "Version 2.0, January 2004" in text
  assert "END OF TERMS AND CONDITIONS" in text  # the full text, not a stub


def test_py_typed_is_shipped_as_package_data():
  assert os.path.isfile(os.path.join(ROOT, "idexpo_jax", "py.typed"))
  assert "py.typed" in _pyproject()["tool"]["setuptools"]["package-data"]["idexpo_jax"]


def test_version_is_written_once_and_in_the_changelog():
  data = _pyproject()
  assert "version" not in data["project"] and "version" in data["project"]["dynamic"]
  assert data["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "idexpo_jax.__version__"}
  assert re.fullmatch(r"\d+\.\d+\.\d+", idexpo_jax.__version__)
  with open(os.path.join(ROOT, "CHANGELOG.md")) as f:
    assert f"## {idexpo_jax.__version__}" in f.read()


def test_lower_bounds_are_the_versions_make_test_min_installs():
  """`make test-min` proves the bounds: its pins must be the bounds of pyproject.toml."""
  bounds = {}
  for dep in _pyproject()["project"]["dependencies"]:
    m = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9.]+)", dep)
    assert m, f"every base dependency needs a lower bound: {dep}"
    bounds[m.group(1).lower()] = m.group(2)
  pins = {}
  with open(os.path.join(ROOT, ".ci", "constraints-min.txt")) as f:
    for line in f:
      line = line.split("#")[0].strip()
      if line:
        name, version = line.split("==")
        pins[name.lower()] = version
  for name in ("jax", "jaxlib", "flax", "optax", "chex", "numpy"):
    assert tuple(map(int, pins[name].split("."))) >= tuple(map(int, bounds[name].split("."))), name
    assert pins[name].startswith(bounds[name]), (name, pins[name], bounds[name])
