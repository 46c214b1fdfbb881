"""Sphinx configuration: MyST Markdown pages, autodoc with Google-style docstrings (napoleon), the furo theme.

Build (warnings are errors): ``sphinx-build -W -b html docs docs/_build/html``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from gradhealth import __version__

project = "gradhealth"
author = "The gradhealth developers"
copyright = "The gradhealth developers"
release = __version__
version = __version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "requirements.txt", "examples"]

myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# Type hints are forward references under ``from __future__ import annotations``; names that only exist for type
# checkers (torch types, matplotlib axes) cannot be resolved into links, which is fine.
nitpicky = False

html_theme = "furo"
html_title = f"gradhealth {release}"
