"""Sphinx configuration for diffpy-cbldm."""

project = "diffpy-cbldm"
author = "diffpy-cbldm developers"
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]
napoleon_numpy_docstring = True
napoleon_google_docstring = False
autodoc_typehints = "description"
exclude_patterns = ["_build"]
html_theme = "furo"
