"""
Refine your own candidate with diffpy.srfit
===========================================

Any ``ase.Atoms`` can be refined against a PDF: here a truncated FCC Pt
octahedron (ase.cluster.Octahedron) against the measured Pt nanoparticle
PDF ``JQ_S1.gr``. ``refine_cluster`` builds a diffpy.srfit ``FitRecipe``
with this package's Debye generator and frees scale, zoomscale, Uiso and
delta2 in stages; the result holds the recipe, the refined cluster and
the refined values with uncertainties, and writes ``.res``, ``.fgr``,
``.xyz``, ``.cif`` and a PDFgui-style plot.
"""

# %%
import sys
import tempfile
from pathlib import Path

from ase.cluster import Octahedron
from diffpy.structure import loadStructure

from diffpy_cbldm import refine_cluster

# The project's shared/ folder sits beside the repository: try from the
# repository root, then from examples/ (sys.argv[0] is this script, also
# when sphinx-gallery runs it).
path = Path("../shared/data/experimental/JQ_S1.gr")
if not path.exists():
    path = Path(sys.argv[0]).resolve().parents[2] / "shared" / "data"
    path = path / "experimental" / "JQ_S1.gr"
if not path.exists():
    print(f"{path} not found: this example needs the project's shared data")
    sys.exit(0)

cluster = Octahedron("Pt", length=9, cutoff=3)
result = refine_cluster(cluster, path, rmax=30.0)
print(result.summary())

# %%
# The srfit recipe is there to be extended, e.g. to free qdamp as well.
recipe = result.recipe
print(sorted(recipe.getNames()))

# %%
outdir = Path(tempfile.mkdtemp())
for written in result.save(outdir, "JQ_S1-octahedron"):
    print("wrote", written)

# %%
# The CIF is the refined cluster for DiffPy: diffpy.structure reads it
# back with the refined Uiso, in a P1 box that keeps every periodic image
# at least the fit's rmax (30 Å) plus 5 Å away from the cluster.
stru = loadStructure(str(outdir / "JQ_S1-octahedron.cif"))
a, b, c = stru.lattice.abcABG()[:3]
print(f"{len(stru)} atoms, Uiso {stru[0].Uisoequiv:.5f} Å²,", end=" ")
print(f"box {a:.2f} x {b:.2f} x {c:.2f} Å")
