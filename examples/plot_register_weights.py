"""
Publish weights from your own package
=====================================

Weights are found through the entry-point group ``diffpy_cbldm.weights``:
a package registers a function that returns its weights folder, e.g. in
its ``pyproject.toml``::

    [project.entry-points."diffpy_cbldm.weights"]
    my-metals-v1 = "my_package.weights:my_metals_v1"

Here a throw-away distribution is laid out by hand (what ``pip install``
would leave in site-packages) and registers a copy of the shipped
weights under another name.
"""

# %%
import importlib
import shutil
import sys
import tempfile
from pathlib import Path

from diffpy_cbldm import CbLDMGenerator
from diffpy_cbldm.weights import available

site = Path(tempfile.mkdtemp())
package = site / "my_weights_pkg"
package.mkdir()
shutil.copytree(available()["mmnp-v2"], package / "my_metals_v1")
(package / "__init__.py").write_text(
    "from pathlib import Path\n\n\n"
    "def my_metals_v1():\n"
    "    return Path(__file__).parent / 'my_metals_v1'\n"
)
info = site / "my_weights-0.1.dist-info"
info.mkdir()
(info / "METADATA").write_text(
    "Metadata-Version: 2.1\nName: my-weights\nVersion: 0.1\n"
)
(info / "entry_points.txt").write_text(
    "[diffpy_cbldm.weights]\nmy-metals-v1 = my_weights_pkg:my_metals_v1\n"
)
sys.path.insert(0, str(site))
# New files on sys.path: let the import system (and importlib.metadata)
# look again, as after installing a package in a running session.
importlib.invalidate_caches()

# %%
print(sorted(available()))
gen = CbLDMGenerator.from_pretrained("my-metals-v1", device="cpu")
print(gen)
