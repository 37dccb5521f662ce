"""Sphinx configuration: the API reference (docs/api/) built from the docstrings, beside the
experiment reports (docs/*.md, read by myst-parser).

    make docs   # -> docs/_build/html/index.html, warnings are errors
"""

import dataclasses
import inspect
import os
import re
import sys

sys.path.insert(0, os.path.abspath(".."))  # the checkout's idexpo_jax, even without an install
os.environ.setdefault("JAX_PLATFORMS", "cpu")

project = "idexpo_jax"
author = "idexpo_jax authors"
copyright = "2026, idexpo_jax authors"  # noqa: A001 (Sphinx's name)

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",  # Google-style Args/Returns/Raises sections
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "myst_parser",  # the Markdown experiment reports
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# Docstrings write `x` for code (Markdown habit); render it as inline code, never as a reference.
default_role = "code"

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_type_aliases = {"Array": "jax.Array"}  # the modules' `Array = jax.Array`
autodoc_default_options = {"show-inheritance": False}
autosummary_generate = False  # the pages list every entry themselves (tests/test_docs.py checks)
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_use_ivar = True  # NamedTuple fields: documented once, by autodoc

# The reports link to source files and results outside docs/ (fine on GitHub, not Sphinx
# documents), and some start below level-1 headings.
myst_heading_anchors = 3
suppress_warnings = ["myst.xref_missing", "myst.header"]

html_theme = "furo"
html_title = "idexpo_jax"


def _show_constructor_signatures() -> None:
  """Flax NNX's metaclass defines `__call__`, which autodoc (like `inspect`) reads before
  `__init__`, so every `nnx.Module` would be shown as `(*args, **kwargs)`. Give each module class
  of the package its constructor's signature (less `self`) as `__signature__`, the attribute both
  read first; the parameters' types then come from the same signature."""
  from flax import nnx

  import idexpo_jax  # noqa: F401 (imports the submodules that define the models)

  for modname, module in sorted(sys.modules.items()):
    if not modname.startswith("idexpo_jax") or module is None:
      continue
    for obj in vars(module).values():
      if (inspect.isclass(obj) and issubclass(obj, nnx.Module) and obj.__module__ == modname
          and "__signature__" not in vars(obj)):
        sig = inspect.signature(obj.__init__, eval_str=True)
        obj.__signature__ = sig.replace(parameters=list(sig.parameters.values())[1:])


_FIELD = re.compile(r"^:(ivar|vartype) (\w+):")


def _fields_as_parameters(app, what, name, obj, options, lines):
  """The `Attributes:` of a dataclass or NamedTuple are also its constructor's parameters: render
  them as `:param:` (napoleon writes `:ivar:`), so that the types of the signature merge into the
  same list instead of a second, undescribed "Parameters" list."""
  del app, name, options
  if what != "class":
    return
  if dataclasses.is_dataclass(obj):
    names = {f.name for f in dataclasses.fields(obj) if f.init}
  elif issubclass(obj, tuple) and hasattr(obj, "_fields"):
    names = set(obj._fields)
  else:
    return
  for i, line in enumerate(lines):
    m = _FIELD.match(line)
    if m and m.group(2) in names:
      role = "param" if m.group(1) == "ivar" else "type"
      lines[i] = f":{role} {m.group(2)}:{line[m.end():]}"


def setup(app):
  _show_constructor_signatures()
  app.connect("autodoc-process-docstring", _fields_as_parameters)
