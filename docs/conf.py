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
autodoc_member_order = "bysource"
exclude_patterns = ["_build"]
html_theme = "furo"
html_title = "diffpy-cbldm"

# Napoleon turns every word of a parameter's type into a cross-reference,
# including array-shape names such as ``(B, latent_channels, 16, 16)``;
# where several configuration classes have an attribute of that name
# Sphinx warns "more than one target found". Those words are shapes, not
# links, so the warning is silenced (it is the only warning of this
# subtype: unresolved references have their own subtypes).
suppress_warnings = ["ref.python"]
