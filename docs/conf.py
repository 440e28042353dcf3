"""Sphinx configuration for diffpy-cbldm."""

project = "diffpy-cbldm"
author = "diffpy-cbldm developers"
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx_gallery.gen_gallery",
]
napoleon_numpy_docstring = True
napoleon_google_docstring = False
autodoc_typehints = "description"
autodoc_member_order = "bysource"
exclude_patterns = ["_build", "sg_execution_times.rst"]
html_theme = "furo"
html_title = "diffpy-cbldm"

# Napoleon turns every word of a parameter's type into a cross-reference,
# including array-shape names such as ``(B, latent_channels, 16, 16)``;
# where several configuration classes have an attribute of that name
# Sphinx warns "more than one target found". Those words are shapes, not
# links, so the warning is silenced (it is the only warning of this
# subtype: unresolved references have their own subtypes).
suppress_warnings = ["ref.python"]

# The examples in ../examples, rendered (and, by default, run) as a
# gallery. The test suite builds the docs with ``-D plot_gallery=0``: it
# runs every example itself (tests/test_examples.py).
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    # plot_register_weights puts a throw-away distribution on sys.path,
    # which the entry-point lookup inside the Sphinx process does not see;
    # it is shown, not run, here (tests/test_examples.py runs it).
    "filename_pattern": r"/plot_(?!register_weights)",
    "download_all_examples": False,
    "remove_config_comments": True,
}
