"""
Propose and refine structures for a measured PDF
================================================

The Pt nanoparticle PDF ``JQ_S1.gr`` (DESY, xPDFsuite header with Qmax and
the composition) is solved with CbLDM: ten candidates, each refined with
diffpy.srfit (scale, zoomscale, Uiso, delta2), ranked by Rw. The same
thing from the shell is ``cbldm solve JQ_S1.gr -n 10 -o jq-s1``.
"""

# %%
import sys
from pathlib import Path

from diffpy_cbldm import CbLDMGenerator, load_pdf

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

data = load_pdf(path)
print(data)

# %%
# Fit only 1.5-30 Å, where the model's PDFs live; the file goes to 50 Å.
gen = CbLDMGenerator.from_pretrained()
results = gen.solve(data, n=10, seed=0, rmax=30.0, progress=False)
for rank, res in enumerate(results, 1):
    print(f"#{rank}: Rw {res.rw:.3f}, {res.atoms.get_chemical_formula()}")

# %%
# The three best fits, PDFgui-style, drawn in a pyplot figure so that it
# shows (by itself plot_ranked_fits draws on a private Agg canvas).
import matplotlib.pyplot as plt  # noqa: E402

from diffpy_cbldm.plotting import plot_ranked_fits  # noqa: E402

plot_ranked_fits(results, "solve_measured_pdf.png", top=3, fig=plt.figure())
