"""The Sphinx documentation builds with warnings as errors (so that the
API reference, cross-references and the example gallery cannot rot)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).parents[1] / "docs"

pytest.importorskip("sphinx")
pytest.importorskip("sphinx_gallery")
pytest.importorskip("furo")


def test_docs_build_without_warnings(tmp_path):
    # The gallery pages are generated into docs/auto_examples; the
    # examples themselves run in tests/test_examples.py, not here.
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-q",
            "-b",
            "html",
            "-D",
            "plot_gallery=0",
            "-d",
            str(tmp_path / "doctrees"),
            str(DOCS),
            str(tmp_path / "html"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    html = tmp_path / "html"
    assert (html / "index.html").is_file()
    assert (html / "auto_examples" / "index.html").is_file()
    for name in ("api", "cli", "getting_started"):
        assert (html / f"{name}.html").is_file(), name
    shutil.rmtree(tmp_path / "doctrees", ignore_errors=True)
