"""Sphinx configuration: the API reference (docs/api/) built from the docstrings, beside the
experiment reports (docs/*.md, read by myst-parser).

    make docs   # -> docs/_build/html/index.html, warnings are errors
"""

import os
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
